"""The built-in synthetic city -> weather CTTA benchmark: its stages.

Each stage is reused when its output exists: generate the data, train the
source model and, when their rows run, warm up ViDA's adapters and fine-tune
the Oracle (:mod:`.training`, :mod:`.oracle`), run every method through
``tools/test_ctta.py`` over the stream, then write the comparison
(:mod:`.report`). Driven by ``tools/run_synthetic_benchmark.py``,
``tools/ablate_moase.py`` and ``tools/sweep_ctta.py``; not part of the
installed library.
"""
import json
import os
import os.path as osp
import subprocess
import sys
import threading
import time
from typing import Dict, List, Optional, Sequence

from .oracle import train_oracle
from .report import ORACLE, aggregate
from .training import (CONFIG_DIR, ROOT, SOURCE_CONFIG, _log, train_source,
                       warmup_vida)

#: ``--conditions``: the generator's conditions preset, the source recipe and
#: the default data and work folders. ``legacy``: every table before the
#: calibrated conditions (severity 0.7 everywhere, no photometric augmentation
#: in the source training), in folders of its own.
CONDITIONS = {
    'calibrated': dict(severity='calibrated', source_config=SOURCE_CONFIG,
                       suffix=''),
    'legacy': dict(severity='legacy', suffix='_legacy', source_config=osp.join(
        CONFIG_DIR, 'segformer_mit-b0_synthetic-source-legacy_128x256.py')),
}
METHOD_CONFIGS = {
    'Source': 'source_mit-b0_3rounds_synthetic-city2weather-128x256.py',
    'NormStat': 'norm_stat_mit-b0_3rounds_synthetic-city2weather-128x256.py',
    'TENT': 'tent_mit-b0_3rounds_synthetic-city2weather-128x256.py',
    'CoTTA': 'cotta_mit-b0_3rounds_synthetic-city2weather-128x256.py',
    'MoASE': 'moase_mit-b0_3rounds_synthetic-city2weather-128x256.py',
    'ViDA': 'vida_mit-b0_3rounds_synthetic-city2weather-128x256.py',
    # The learning-rate confound: MoASE with the backbone at CoTTA's rate, and
    # CoTTA at MoASE's rate and optimiser.
    'MoASE-split': 'moase-split_mit-b0_3rounds_synthetic-city2weather-128x256.py',
    'CoTTA-lr2e-4': 'cotta-lr2e-4_mit-b0_3rounds_synthetic-city2weather-128x256.py',
    # MoASE++: MoASE plus on-policy distillation on a policy-augmented input
    # (docs/moase_pp.md); on request (``--methods MoASE++``).
    'MoASE++': 'moase-pp_mit-b0_3rounds_synthetic-city2weather-128x256.py',
}
#: Methods that adapt: each runs once per seed (CoTTA and MoASE draw stochastic
#: restore masks; NormStat and TENT should give the same table for every seed,
#: which the spread column then shows). Source does not adapt: one run.
ADAPTING = ('NormStat', 'TENT', 'CoTTA', 'MoASE', 'ViDA', 'MoASE-split',
            'CoTTA-lr2e-4', 'MoASE++')
DOMAINS = ('fog', 'night', 'rain', 'snow')
#: The main job's rows: the baselines, the learning-rate confound's
#: CoTTA-lr2e-4 beside MoASE (at the paper's one-group 2e-4), ViDA and the
#: Oracle's headroom. MoASE-split runs on request (``--methods``).
DEFAULT_METHODS = ('Source', 'NormStat', 'TENT', 'CoTTA', 'CoTTA-lr2e-4',
                   'MoASE', 'ViDA', 'Oracle')

#: Stream lengths. ``default``: 64 images per condition x 4 x 3 rounds = 768
#: adaptation steps, longer than the 693-step half-life of an EMA teacher at
#: momentum 0.999 (16 images, the earlier length, gave 192 steps: the scored
#: teacher stayed near the source model whatever the student learned).
#: ``long``: ACDC's 400 images per condition (4800 steps, the real protocol).
PROTOCOLS = {
    'default': dict(num_target=64, data_root='data/synthetic_city',
                    work_root='work_dirs/synthetic_benchmark'),
    'long': dict(num_target=400, data_root='data/synthetic_city_long',
                 work_root='work_dirs/synthetic_benchmark_long'),
}

#: Named variants: a method's config with some options changed
#: (``--cfg-options``), each run and reported as its own row.
VARIANTS = {
    'MoASE-active': ('MoASE', [
        'model.backbone.moase_cfg.sdd_ranking=active']),
    'MoASE-all': ('MoASE', ['model.backbone.moase_cfg.sdd_ranking=all']),
    # The public code's expert selection as it runs: all four experts keep
    # their smallest post-ReLU activations (its 'largest' ones too).
    'MoASE-released': ('MoASE', [
        'model.backbone.moase_cfg.sdd_ranking=released']),
    # MoASE++ at a fixed strength 0.5 for all three (no learned policy).
    'MoASE++-fixed-strength': ('MoASE++', [
        'ctta_method.fixed_strength=0.5']),
    'MoASE-keep-adapters': ('MoASE', ['ctta_method.restore_adapters=False']),
    'MoASE-ste': ('MoASE', ['model.backbone.moase_cfg.asg_grad=ste']),
    # Sample scope: K = floor(N * r * p) over a whole map, so the ASG's share
    # moves K by many entries where per token (r = 16) it rarely moves it by one.
    'MoASE-sample': ('MoASE', ['model.backbone.moase_cfg.sdd_scope=sample']),
    'MoASE-bn': ('MoASE', ['ctta_method.bn_stats=test_batch']),
    'CoTTA-bn': ('CoTTA', ['ctta_method.bn_stats=test_batch']),
    # The released set_scale's elif: the high-rank scale is never set.
    'ViDA-released-scales': ('ViDA', ['ctta_method.scale_rule=released']),
    # Fresh (zero-output) adapters from the source model, no warm-up.
    'ViDA-fresh': ('ViDA', []),
    # Self-training at a larger rate without the augmented teacher (ViDA's
    # issue 4 on ACDC: +2.1 over CoTTA in round 1), with MoASE's Adam.
    'CoTTA-1view-lr3e-4': ('CoTTA', [
        'ctta_method.multi_view=False',
        'ctta_method.optim_wrapper.optimizer.lr=0.0003',
        'ctta_method.optim_wrapper.optimizer.betas=(0.9,0.99)']),
}
#: Variants that start from the source model although their method warms up.
NO_WARMUP = ('ViDA-fresh', )
#: ``ORACLE`` is not a method: the source model fine-tuned on labelled scenes
#: of each condition that the stream does not show (:mod:`.oracle`), scored
#: with Source's config; the headroom of adaptation. Run on request.


#: Relative cost of a method's run (x Source time, measured on the benchmark)
#: and of a training stage: only the order of the runs side by side depends
#: on them (costliest first).
RUN_COST = {'Source': 1.0, 'NormStat': 1.1, 'TENT': 2.4, 'CoTTA': 10.4,
            'CoTTA-lr2e-4': 10.4, 'MoASE': 14.7, 'MoASE-split': 14.7,
            'ViDA': 12.8, ORACLE: 1.2}
STAGE_COST = 3.0
#: The source model's folder under a benchmark work root.
SOURCE_MODEL_DIR = 'source_model'


def threads_per_job(jobs: int) -> Optional[int]:
    """Torch threads of each of ``jobs`` runs side by side: an equal share of
    the cores (at least 1). One run at a time (``jobs`` 1) gets None: it
    keeps the environment's thread count (``OMP_NUM_THREADS``), since a
    second intra-op thread on a busy core slows a run down many times.

    Args:
        jobs (int): Runs side by side (>= 1).

    Returns:
        int, optional: Threads per run, or None for ``jobs`` 1.
    """
    return max(1, (os.cpu_count() or 1) // jobs) if jobs > 1 else None


def source_model_dir(work_dir: Optional[str] = None,
                     conditions: str = 'calibrated') -> str:
    """Where the benchmark's source model is trained or found.

    A work folder the user chose holds its own (``<work_dir>/source_model``);
    otherwise every protocol shares the default protocol's model of the
    ``conditions`` (same source data, same recipe; only the stream length
    differs), ``<default work root><suffix>/source_model``.

    Args:
        work_dir (str, optional): The user's work folder (``--work-dir``);
            None: the protocols' default folders.
        conditions (str): A key of ``CONDITIONS``. Defaults to
            ``'calibrated'``.

    Returns:
        str: The folder (``source_model.json`` and the checkpoint in it).
    """
    if work_dir:
        return osp.join(work_dir, SOURCE_MODEL_DIR)
    return osp.join(PROTOCOLS['default']['work_root'] +
                    CONDITIONS[conditions]['suffix'], SOURCE_MODEL_DIR)


def run_cost(name: str) -> float:
    """The relative cost of a method's or variant's run (``RUN_COST``; an
    ablation row or an unknown name counts as MoASE's)."""
    base = VARIANTS[name][0] if name in VARIANTS else name
    return RUN_COST.get(base, RUN_COST['MoASE'])


def stage_function(name: str):
    """A training stage by name: ``warmup_vida`` or ``train_oracle``."""
    if name == 'train_oracle':
        return train_oracle
    if name == 'warmup_vida':
        return warmup_vida
    raise ValueError(f'unknown stage {name!r}')


def run_stage_process(name: str, kwargs: Dict, threads: Optional[int],
                      log_path: str) -> None:
    """Run the stage ``name`` (:func:`stage_function`) with ``kwargs`` in a
    process of its own with ``threads`` torch threads (beside the stream runs,
    as they run); its output goes to ``log_path``. The caller then calls the
    stage in its process, which finds the saved result and reuses it."""
    code = ('import json, sys; sys.path.insert(0, sys.argv[1]); '
            'from tools.synthetic_benchmark.stages import stage_function; '
            'stage_function(sys.argv[2])(**json.loads(sys.argv[3]))')
    env = dict(os.environ)
    if threads:
        env['OMP_NUM_THREADS'] = env['MKL_NUM_THREADS'] = str(threads)
    os.makedirs(osp.dirname(log_path), exist_ok=True)
    _log(f'{name}: beside the stream runs, output in {log_path}')
    with open(log_path, 'a') as log:
        proc = subprocess.run([sys.executable, '-c', code, ROOT, name,
                               json.dumps(kwargs)], env=env, stdout=log,
                              stderr=subprocess.STDOUT)
    if proc.returncode:
        with open(log_path) as f:
            tail = ''.join(f.readlines()[-25:])
        raise RuntimeError(f'{name} failed (exit {proc.returncode}); the end '
                           f'of {log_path}:\n{tail}')


def needs_vida_warmup(name: str) -> bool:
    """Whether a method or variant starts from the ViDA warm-up checkpoint."""
    base = VARIANTS[name][0] if name in VARIANTS else name
    return base == 'ViDA' and name not in NO_WARMUP


def method_spec(name: str, configs: Optional[Dict[str, str]] = None):
    """``(config file, extra --cfg-options)`` of a method or variant, or of a
    row of ``configs`` (name -> config path, e.g. the ablation's)."""
    if configs and name in configs:
        return configs[name], []
    if name in METHOD_CONFIGS:
        return METHOD_CONFIGS[name], []
    if name == ORACLE:  # Source's config with the oracle checkpoint
        return METHOD_CONFIGS['Source'], []
    if name in VARIANTS:
        base, options = VARIANTS[name]
        return METHOD_CONFIGS[base], list(options)
    known = [*METHOD_CONFIGS, *VARIANTS, ORACLE, *(configs or [])]
    raise ValueError(f'unknown method {name!r}; choose from {known}')


def _log(msg: str) -> None:
    print(f'[benchmark] {msg}', flush=True)


def _domain_options(data_root: str, rounds: Optional[int]) -> List[str]:
    opts = [f'ctta_stream.dataloader.dataset.data_root={data_root}']
    if rounds is not None:
        opts.append(f'ctta_stream.rounds={rounds}')
    return opts


def run_method(method: str, checkpoint: str, work_dir: str, seed: int,
               data_root: str, rounds: Optional[int] = None,
               extra_options: Sequence[str] = (),
               threads: Optional[int] = None, quiet: bool = False,
               configs: Optional[Dict[str, str]] = None) -> Dict:
    """One method (or variant) over the stream through ``tools/test_ctta.py``
    (a subprocess, with ``threads`` torch threads when given). ``quiet``: its
    output goes to ``<work_dir>/run.log`` only (for runs side by side). An
    empty ``data_root`` leaves the config's data roots (``extra_options`` may
    set them)."""
    from mmseg_moase.evaluation.results import read_finished_results
    results = osp.join(work_dir, 'ctta_results.json')
    res = read_finished_results(results)
    if res is not None:
        _log(f'{method} seed {seed}: done before ({results})')
        return res
    config_name, variant_options = method_spec(method, configs)
    config = osp.join(CONFIG_DIR, config_name)  # absolute paths stay as they are
    options = [*(_domain_options(data_root, rounds) if data_root else []),
               *variant_options, *extra_options]
    # An untrusted table (too many skipped updates) is still a row: its
    # verdict is in ctta_results.json and the run's log says why.
    cmd = [sys.executable, osp.join(ROOT, 'tools', 'test_ctta.py'), config,
           checkpoint, '--work-dir', work_dir, '--seed', str(seed),
           '--allow-untrusted']
    if options:
        cmd += ['--cfg-options', *options]
    if osp.exists(osp.join(work_dir, 'ctta_state.pth')):
        cmd.append('--resume')
    _log(f'{method} seed {seed}: ' + ' '.join(cmd[1:4]) +
         (f' {" ".join(variant_options)}' if variant_options else '') + ' ...')
    env = dict(os.environ)
    if threads:
        env['OMP_NUM_THREADS'] = str(threads)
        env['MKL_NUM_THREADS'] = str(threads)
    t0 = time.perf_counter()
    if quiet:
        log_path = osp.join(work_dir, 'run.log')
        os.makedirs(work_dir, exist_ok=True)
        _log(f'{method} seed {seed}: output in {log_path}')
        with open(log_path, 'a') as log:
            proc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=log,
                                  stderr=subprocess.STDOUT)
        if proc.returncode:
            with open(log_path) as f:
                tail = ''.join(f.readlines()[-25:])
            raise RuntimeError(f'{method} seed {seed} failed (exit '
                               f'{proc.returncode}); the end of {log_path}:\n'
                               f'{tail}')
    else:
        subprocess.run(cmd, check=True, cwd=ROOT, env=env)
    _log(f'{method} seed {seed}: {time.perf_counter() - t0:.0f}s')
    with open(results) as f:
        return json.load(f)


def run_synthetic_benchmark(work_root: str = 'work_dirs/synthetic_benchmark',
                            data_root: str = 'data/synthetic_city',
                            methods: Sequence[str] = DEFAULT_METHODS,
                            seeds: Sequence[int] = (0, ),
                            generator: Optional[Dict] = None,
                            train_iters: Optional[int] = None,
                            train_batch_size: Optional[int] = None,
                            rounds: Optional[int] = None,
                            extra_options: Sequence[str] = (),
                            jobs: int = 1,
                            source_dir: Optional[str] = None,
                            warmup_iters: Optional[int] = None,
                            configs: Optional[Dict[str, str]] = None,
                            out_name: str = 'comparison',
                            oracle: Optional[Dict] = None,
                            source_config: str = SOURCE_CONFIG) -> Dict:
    """Run every stage; returns the comparison JSON (also written to disk).

    Args:
        methods: Methods (``METHOD_CONFIGS``), variants (``VARIANTS``) and
            ``ORACLE`` (trained beside the source model, ``oracle_model``).
        generator: :func:`generate_synthetic_city` arguments over the default
            protocol's (64 images per condition).
        jobs: Method runs side by side, each with ``cpu_count // jobs`` torch
            threads (independent processes; another thread count can change
            float rounding, nothing else). Above 1, ViDA's warm-up and the
            Oracle's fine-tuning run as processes beside the stream runs too
            (with their thread count), each before the rows it feeds; at 1
            they run in this process before every row. Defaults to 1.
        source_dir: Where the source model is trained or found (default
            ``<work_root>/source_model``); ViDA's warm-up goes beside it
            (``vida_warmup``).
        warmup_iters: Override the ViDA warm-up's length.
        configs: More rows by name -> config path (run once per seed, like
            the adapting methods; ``tools/ablate_moase.py``'s).
        out_name: Base name of the table, JSON and plot (``comparison``:
            ``comparison.md``, ``comparison.json``, ``miou_stream.png``).
        oracle: :func:`~.oracle.train_oracle` arguments (``max_iters``,
            ``num_per_condition``) when ``ORACLE`` is in ``methods``.
        source_config: The source model's training config (``CONDITIONS``).
    """
    from mmseg_moase.datasets.synthetic_city import generate_synthetic_city
    for m in methods:
        method_spec(m, configs)  # unknown names fail before anything runs
    if jobs < 1:
        raise ValueError(f'jobs must be >= 1, got {jobs}')
    timings = {}
    t0 = time.perf_counter()
    gen = dict(num_target=PROTOCOLS['default']['num_target'])
    gen.update(generator or {})
    _log(f'data: {data_root} ({gen})')
    generate_synthetic_city(data_root, **gen)
    timings['data_s'] = time.perf_counter() - t0

    t0 = time.perf_counter()
    source = train_source(data_root, source_dir or source_model_dir(work_root),
                          train_iters, train_batch_size, source_config)
    timings['source_model_s'] = time.perf_counter() - t0
    checkpoints = dict(source=source['checkpoint'])
    stage_dir = osp.normpath(osp.join(osp.dirname(source['checkpoint']),
                                      os.pardir))
    # Trainings that start from the source model, each feeding some rows:
    # checkpoint key -> (summary key, function, keyword arguments).
    prereqs = {}
    if any(needs_vida_warmup(m) for m in methods):
        prereqs['vida'] = ('vida_warmup', 'warmup_vida', dict(
            source=source, data_root=data_root,
            work_dir=osp.join(stage_dir, 'vida_warmup'),
            max_iters=warmup_iters))
    if ORACLE in methods:
        prereqs['oracle'] = ('oracle', 'train_oracle', dict(
            source=source, data_root=data_root,
            work_dir=osp.join(stage_dir, 'oracle_model'), **(oracle or {})))

    # Adapting methods run every seed; Source and Oracle (deterministic) and
    # the named variants (one option changed, compared on one seed) the first
    # only.
    tasks = [(m, s) for m in methods
             for s in (seeds if m in ADAPTING or m in (configs or {})
                       else seeds[:1])]
    threads = threads_per_job(jobs)

    def checkpoint_key(m: str) -> str:
        return ('oracle' if m == ORACLE else
                'vida' if needs_vida_warmup(m) else 'source')

    summaries = {}
    locks = {key: threading.Lock() for key in prereqs}

    def prepare(key: str) -> None:
        """The training ``key`` feeds its runs (once; reused if saved)."""
        with locks[key]:
            if key in checkpoints:
                return
            name, func, kwargs = prereqs[key]
            t = time.perf_counter()
            if jobs > 1:  # beside the stream runs, with their thread count
                log = osp.join(kwargs['work_dir'], 'stage.log')
                run_stage_process(func, kwargs, threads, log)
                _log(f'{func}: finished after '
                     f'{(time.perf_counter() - t) / 60:.1f} min ({log})')
            summaries[name] = stage_function(func)(**kwargs)  # the saved one
            checkpoints[key] = summaries[name]['checkpoint']
            timings[osp.basename(kwargs['work_dir']) + '_s'] = \
                time.perf_counter() - t

    def work(task):
        m, seed = task
        key = checkpoint_key(m)
        if key in prereqs:
            prepare(key)
        t = time.perf_counter()
        res = run_method(m, checkpoints[key],
                         osp.join(work_root, m.lower(), f'seed{seed}'), seed,
                         data_root, rounds, extra_options, threads=threads,
                         quiet=jobs > 1, configs=configs)
        return m, seed, res, time.perf_counter() - t

    if jobs == 1:
        for key in prereqs:  # in this process, before the runs
            prepare(key)
    t_stream = time.perf_counter()
    done: Dict[tuple, Dict] = {}
    if jobs == 1:
        outcomes = map(work, tasks)
    else:
        # Side by side, the costliest first so that no long run starts last;
        # the first run of a training's rows counts the training too.
        firsts = {checkpoint_key(m): (m, s) for m, s in reversed(tasks)}
        order = sorted(tasks, key=lambda t: -run_cost(t[0]) - (
            STAGE_COST if t in firsts.values() and checkpoint_key(t[0])
            in prereqs else 0))
        from concurrent.futures import ThreadPoolExecutor
        pool = ThreadPoolExecutor(jobs)
        outcomes = pool.map(work, order)
    for m, seed, res, secs in outcomes:
        done[(m, seed)] = res
        timings[f'{m}_s'] = timings.get(f'{m}_s', 0.0) + secs
        _log(f'{m} seed {seed}: mean mIoU {res["summary"]["mean_mIoU"]:.2f} '
             f'({secs:.0f}s)')
    source = dict(source, **summaries)
    timings['streams_wall_s'] = time.perf_counter() - t_stream
    runs: Dict[str, List[Dict]] = {}
    for m, seed in tasks:
        runs.setdefault(m, []).append(done[(m, seed)])
    payload = aggregate(runs, work_root, source, out_name)
    payload['stage_seconds'] = {k: round(v, 1) for k, v in timings.items()}
    payload['jobs'] = jobs
    with open(osp.join(work_root, f'{out_name}.json'), 'w') as f:
        json.dump(payload, f, indent=2)
    with open(osp.join(work_root, f'{out_name}.md')) as f:
        print(f.read())
    _log('stage times: ' + ', '.join(f'{k[:-2]} {v / 60:.1f} min'
                                     for k, v in timings.items()))
    plot = 'miou_stream' if out_name == 'comparison' else f'{out_name}_stream'
    for name in (f'{out_name}.md', f'{out_name}.json', f'{plot}.png'):
        _log(f'results: {osp.abspath(osp.join(work_root, name))}')
    return payload
