#!/usr/bin/env python
"""Choose one hyper-parameter per method on a validation stream, then test it.

    python tools/sweep_ctta.py CONFIG[=CHECKPOINT] ... --checkpoint CKPT
        [--param lr] [--values 0.1 1 10] --val-options KEY=VALUE ...
        --test-options KEY=VALUE ... [--work-dir DIR] [--jobs 2]
    python tools/sweep_ctta.py CONFIG ... --synthetic [--values ...]

Every method (config) runs over a grid of one hyper-parameter on a validation
stream whose scenes are disjoint from the test stream's; the value with the
best mean mIoU is selected and the test stream is run with it and with the
config's own value. Outputs under the work dir: ``sweep.json`` (every grid
point), ``sweep.md`` (the config values' and the selected values' test
tables side by side) and ``sweep.png`` (validation mIoU against the value, one
curve per method). Each run is a ``tools/test_ctta.py`` run in its own work
dir, skipped when its results are complete, so an interrupted sweep resumes.

``--param``: ``lr`` (default) multiplies every learning rate of the method by
each value (1 = the config's; a method with two rates keeps their ratio);
``momentum`` sets the EMA teacher's momentum (EMATeacherHook); any other
string is a config key (``--cfg-options`` syntax) set to each value.

``--synthetic``: the built-in benchmark. The validation stream is the
synthetic generator with another seed (seed 1: other scenes, same
conditions), written to data/synthetic_city_val; the test stream is the
benchmark's (data/synthetic_city); the checkpoint defaults to the benchmark's
source model. On real data choose a split and pass it with ``--val-options``
(e.g. ``ctta_stream.domains.0.dataset.data_prefix.img_path=...`` per domain).
"""
import argparse
import json
import os
import os.path as osp
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, List, Optional, Sequence, Tuple

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from tools.bench_utils import default_jobs  # noqa: E402
from tools.synthetic_benchmark import (  # noqa: E402
    CONFIG_DIR, METHOD_CONFIGS, PROTOCOLS, run_method, source_model_dir,
    threads_per_job)

VAL_SEED = 1
VAL_ROOT = 'data/synthetic_city_val'
#: Table labels of the method types whose registered name is not their label.
METHOD_LABELS = {'MoASEPP': 'MoASE++'}


def lr_options(cfg, factor: float) -> List[str]:
    """``--cfg-options`` multiplying every learning rate of the config's
    method by ``factor`` (the model's: MoASE++'s augmentation policy keeps
    its own ``policy_lr``). A rate the config leaves to the method is the
    class's: its constructor default, or its default optimiser's."""
    import mmseg_moase  # noqa: F401  (registers the methods)
    from mmseg_moase.methods.builder import method_defaults, resolve_method_cfg
    method = resolve_method_cfg(cfg.ctta_method)
    defaults = method_defaults(method.get('type'))
    rates = {k: method.get(k, defaults.get(k))
             for k in ('base_lr', 'adapter_lr', 'lr')}
    opts = [f'ctta_method.{k}={v * factor:.6g}' for k, v in rates.items()
            if v is not None]
    ow = method.get('optim_wrapper')
    if ow and 'lr' in ow.get('optimizer', {}):
        opts.append('ctta_method.optim_wrapper.optimizer.lr='
                    f"{ow['optimizer']['lr'] * factor:.6g}")
        for g, lr in (ow.get('paramwise_cfg', {}).get('group_lr') or {}).items():
            opts.append(f'ctta_method.optim_wrapper.paramwise_cfg.group_lr.'
                        f'{g}={lr * factor:.6g}')
    if not opts:
        raise ValueError(f'{cfg.filename}: the method {method.get("type")} has '
                         'no learning rate (nothing adapts by gradient); leave '
                         'it out of an lr sweep')
    return opts


def momentum_options(cfg, value: float) -> List[str]:
    hooks = cfg.get('custom_hooks', [])
    idx = [i for i, h in enumerate(hooks) if h.get('type') == 'EMATeacherHook']
    if not idx:
        raise ValueError(f'{cfg.filename}: no EMATeacherHook in custom_hooks; '
                         'leave it out of a momentum sweep')
    return [f'custom_hooks.{idx[0]}.momentum={value:.6g}']


def param_options(cfg, param: str, value: float) -> List[str]:
    """The ``--cfg-options`` of one grid point."""
    if param == 'lr':
        return lr_options(cfg, value)
    if param == 'momentum':
        return momentum_options(cfg, value)
    return [f'{param}={value!r}']


def spec_value(param: str, cfg) -> Optional[float]:
    """The config's own value of the swept parameter (1 for an lr factor)."""
    if param == 'lr':
        return 1.0
    if param == 'momentum':
        for h in cfg.get('custom_hooks', []):
            if h.get('type') == 'EMATeacherHook':
                if h.get('momentum') is not None:
                    return float(h['momentum'])
                # The method's declared default (MeanTeacherMethod).
                from mmseg_moase.registry import METHODS
                cls = METHODS.get(cfg.ctta_method['type'])
                return getattr(cls, 'ema_momentum', None)
        return None
    node = cfg.to_dict()
    for part in param.split('.'):
        if not isinstance(node, dict) or part not in node:
            node = None
            break
        node = node[part]
    if node is None and param.count('.') == 1 and \
            param.startswith('ctta_method.'):
        # An option the config leaves to the method: the class's default.
        import mmseg_moase  # noqa: F401  (registers the methods)
        from mmseg_moase.methods.builder import method_defaults
        node = method_defaults(cfg.ctta_method['type']).get(
            param.split('.')[1])
    return float(node) if isinstance(node, (int, float)) else None


def select(curve: Dict[float, float]) -> float:
    """The value with the best validation mIoU (the smaller on a tie)."""
    return max(sorted(curve), key=lambda v: curve[v])


def parse_targets(items: Sequence[str], default_ckpt: Optional[str]
                  ) -> List[Tuple[str, str, str]]:
    """``(name, config, checkpoint)`` of every ``CONFIG[=CHECKPOINT]``."""
    out = []
    for item in items:
        config, _, ckpt = item.partition('=')
        ckpt = ckpt or default_ckpt
        if not osp.isfile(config):
            raise FileNotFoundError(f'config not found: {config}')
        if not ckpt:
            raise ValueError(f'{config}: no checkpoint (give --checkpoint or '
                             'CONFIG=CHECKPOINT)')
        out.append((osp.splitext(osp.basename(config))[0], config, ckpt))
    return out


def benchmark_run(config: str, checkpoint: str, seed: int) -> Optional[Dict]:
    """The built-in benchmark's finished run of ``config`` (one of its method
    configs, unchanged) from ``checkpoint`` with ``seed``, or None.

    It is the test-stream run at the config's own values: same config file,
    stream options, checkpoint (sha256 compared) and seed, so the sweep reuses
    it instead of computing it again.
    """
    from mmseg_moase.engine.loops.run_state import file_sha256
    from mmseg_moase.evaluation.results import read_finished_results
    names = {osp.join(CONFIG_DIR, c): n for n, c in METHOD_CONFIGS.items()}
    name = names.get(osp.abspath(config))
    if name is None:
        return None
    path = osp.join(PROTOCOLS['default']['work_root'], name.lower(),
                    f'seed{seed}', 'ctta_results.json')
    res = read_finished_results(path)
    if res is None:
        return None
    prov = res.get('provenance') or {}
    if (prov.get('seed') != seed
            or osp.abspath(prov.get('config') or '') != osp.abspath(config)
            or prov.get('checkpoint_sha256') != file_sha256(checkpoint)):
        return None
    print(f'[sweep] {name} test stream at the config\'s values: the '
          f'benchmark\'s run {path}', flush=True)
    return res


def table(rows: Dict[str, Dict], key: str, label: str) -> List[str]:
    """Markdown rows: each method's test passes for the ``key`` run."""
    lines = []
    for name, r in rows.items():
        res = r[key]
        per = {(p['round'], p['domain']): p['mIoU'] for p in res['passes']}
        n_rounds = res['summary']['rounds']
        r1 = [per.get((0, d)) for d in res['summary']['domains']]
        cells = ' | '.join('-' if v is None else f'{v:.2f}' for v in r1)
        lines.append(f"| {r['method']} | {label} | {r[key + '_value']:g} | "
                     f"{cells} | {res['summary']['mean_mIoU']:.2f} "
                     f'({n_rounds} rounds) |')
    return lines


def plot(curves: Dict[str, Dict], param: str, path: str) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, r in curves.items():
        xs = sorted(r['val'])
        ax.plot(xs, [r['val'][x] for x in xs], marker='o', label=r['method'])
        ax.scatter([r['selected_value']], [r['val'][r['selected_value']]],
                   s=90, facecolors='none', edgecolors='k')
    if all(x > 0 for r in curves.values() for x in r['val']):
        ax.set_xscale('log')
    ax.set_xlabel('learning-rate factor (1 = config)' if param == 'lr'
                  else param)
    ax.set_ylabel('validation stream: mean mIoU')
    ax.set_title('Sensitivity on the validation stream (circle: selected)')
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def synthetic_setup(args) -> None:
    """Fill the options of the built-in benchmark's validation/test streams."""
    from mmseg_moase.datasets.synthetic_city import generate_synthetic_city
    proto = PROTOCOLS['default']
    num = args.val_num_target or proto['num_target']
    generate_synthetic_city(VAL_ROOT, seed=VAL_SEED, num_source_train=1,
                            num_source_val=1, num_target=num)
    generate_synthetic_city(proto['data_root'], num_target=proto['num_target'])
    key = 'ctta_stream.dataloader.dataset.data_root'
    args.val_options = args.val_options or [f'{key}={VAL_ROOT}']
    args.test_options = args.test_options or [
        f'{key}={proto["data_root"]}']
    if not args.checkpoint:
        summary = osp.join(source_model_dir(), 'source_model.json')
        if not osp.isfile(summary):
            sys.exit(f'error: no source model ({summary} is missing): run '
                     'tools/run_synthetic_benchmark.py first, or give '
                     '--checkpoint')
        with open(summary) as f:
            args.checkpoint = json.load(f)['checkpoint']
    args.work_dir = args.work_dir or osp.join(proto['work_root'], 'sweep')


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('configs', nargs='+', metavar='CONFIG[=CHECKPOINT]')
    p.add_argument('--checkpoint', help='source checkpoint for every config '
                   'without its own')
    p.add_argument('--param', default='lr',
                   help="'lr' (factor on the method's rates), 'momentum' or "
                   'a config key')
    p.add_argument('--values', nargs='+', type=float,
                   default=[0.1, 1.0, 10.0, 100.0])
    p.add_argument('--val-options', nargs='+', default=[],
                   help='--cfg-options of the validation stream')
    p.add_argument('--test-options', nargs='+', default=[],
                   help='--cfg-options of the test stream')
    p.add_argument('--synthetic', action='store_true',
                   help='the built-in benchmark (see above)')
    p.add_argument('--val-num-target', type=int,
                   help='--synthetic: validation images per condition '
                   '(default: the test stream\'s)')
    p.add_argument('--work-dir')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--jobs', type=int, default=default_jobs())
    args = p.parse_args(argv)
    args.test_options_given = bool(args.test_options)
    if args.synthetic:
        synthetic_setup(args)
    if not args.val_options:
        sys.exit('error: give the validation stream (--val-options, or '
                 '--synthetic): selecting on the test stream is what this '
                 'tool exists to avoid')
    if not args.work_dir:
        sys.exit('error: give --work-dir')
    from mmengine.config import Config
    try:
        targets = parse_targets(args.configs, args.checkpoint)
        cfgs = {n: Config.fromfile(c) for n, c, _ in targets}
        grid = {n: {v: param_options(cfgs[n], args.param, v)
                    for v in args.values} for n, _, _ in targets}
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f'error: {e}')
    threads = threads_per_job(args.jobs)

    def run(name, config, ckpt, stream, value, opts):
        tag = f'{args.param}{value:g}'
        work = osp.join(args.work_dir, name, stream, tag)
        extra = (args.val_options if stream == 'val' else args.test_options)
        if args.synthetic and stream == 'test' and not opts and \
                not args.test_options_given:
            reused = benchmark_run(config, ckpt, args.seed)
            if reused is not None:
                return reused
        return run_method(f'{name} {stream} {tag}', ckpt, work, args.seed,
                          '', extra_options=list(extra) + opts,
                          threads=threads, quiet=args.jobs > 1,
                          configs={f'{name} {stream} {tag}':
                                   osp.abspath(config)})

    pool = ThreadPoolExecutor(args.jobs)
    val_jobs = {(n, v): pool.submit(run, n, c, k, 'val', v, grid[n][v])
                for n, c, k in targets for v in args.values}
    rows: Dict[str, Dict] = {}
    test_jobs = {}
    for n, c, k in targets:
        curve = {v: val_jobs[(n, v)].result()['summary']['mean_mIoU']
                 for v in args.values}
        best = select(curve)
        spec = spec_value(args.param, cfgs[n])
        mtype = cfgs[n].ctta_method.type
        rows[n] = dict(method=METHOD_LABELS.get(mtype, mtype), config=c,
                       val=curve, selected_value=best, spec_value=spec)
        # The config's own value needs no option, so the benchmark's run of
        # the unchanged config is reused for it (any parameter, not only lr).
        test_jobs[(n, 'spec')] = pool.submit(
            run, n, c, k, 'test', spec if spec is not None else 0.0, [])
        if best != spec:
            test_jobs[(n, 'selected')] = pool.submit(
                run, n, c, k, 'test', best, grid[n][best])
    for n in rows:
        rows[n]['spec'] = test_jobs[(n, 'spec')].result()
        rows[n]['spec_value'] = rows[n]['spec_value'] or 0.0
        rows[n]['selected'] = (test_jobs[(n, 'selected')].result()
                               if (n, 'selected') in test_jobs
                               else rows[n]['spec'])
    pool.shutdown()
    domains = next(iter(rows.values()))['spec']['summary']['domains']
    head = ('| Method | Setting | ' + ('LR factor' if args.param == 'lr'
                                    else args.param) + ' | ' +
            ' | '.join(f'{d} (R1)' for d in domains) + ' | Mean (all) |')
    md = ['# Hyper-parameter selection on a validation stream', '',
          f'Parameter: `{args.param}`; grid {args.values}; selected by the '
          'mean mIoU of the validation stream, then scored on the test '
          'stream.', '', '## Validation stream', '',
          '| Method | ' + ' | '.join(f'{v:g}' for v in args.values) +
          ' | selected |', '|' + '---|' * (len(args.values) + 2)]
    for r in rows.values():
        md.append(f"| {r['method']} | " + ' | '.join(
            f"{r['val'][v]:.2f}" for v in args.values) +
            f" | {r['selected_value']:g} |")
    md += ['', '## Test stream: the config\'s value and the selected one', '',
           head, '|' + '---|' * (len(domains) + 4)]
    md += table(rows, 'spec', 'config')
    md += table(rows, 'selected', 'selected')
    os.makedirs(args.work_dir, exist_ok=True)
    with open(osp.join(args.work_dir, 'sweep.md'), 'w') as f:
        f.write('\n'.join(md) + '\n')
    summary = {n: dict(method=r['method'], config=r['config'],
                       validation={f'{v:g}': m for v, m in r['val'].items()},
                       selected_value=r['selected_value'],
                       spec_value=r['spec_value'],
                       test_spec_mean_mIoU=r['spec']['summary']['mean_mIoU'],
                       test_selected_mean_mIoU=r['selected']['summary']
                       ['mean_mIoU'])
               for n, r in rows.items()}
    with open(osp.join(args.work_dir, 'sweep.json'), 'w') as f:
        json.dump(dict(param=args.param, values=args.values, methods=summary),
                  f, indent=2)
    plot(rows, args.param, osp.join(args.work_dir, 'sweep.png'))
    print('\n'.join(md))
    for name in ('sweep.md', 'sweep.json', 'sweep.png'):
        print(f'[sweep] {osp.abspath(osp.join(args.work_dir, name))}')


if __name__ == '__main__':
    main()
