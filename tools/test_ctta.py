"""Run continual test-time adaptation over a stream of target domains.

    python tools/test_ctta.py CONFIG CHECKPOINT [--work-dir DIR] [--resume]
        [--out-preds DIR] [--seed N] [--cfg-options k=v ...] [--launcher ...]

CHECKPOINT is an mmseg 1.x checkpoint or an original NVlabs SegFormer release file
(e.g. ``segformer.b5.1024x1024.city.160k.pth``): the loader recognises the NVlabs
key layout, converts it in memory (as ``tools/convert_segformer_checkpoint.py``,
with the same checks: MiT variant, head, class count) and logs that it did; NVlabs
weights also get the original MiT LayerNorm epsilons. Writes
``ctta_results.{json,csv,md}`` to the work dir after every pass.

On several GPUs (or CPU processes): ``tools/dist_test_ctta.sh CONFIG CHECKPOINT
GPUS [options]`` runs this with ``--launcher pytorch`` under torchrun; the run
equals one process with batch GPUS x the config's batch (docs/multi_gpu.md).

Exit status: 0 when the stream finished and its table is trustworthy; 3
(``EXIT_UNTRUSTED``) when it finished but more than
``ctta_cfg.max_skipped_share`` of the updates were skipped (non-finite loss:
the warnings say where the collapse began; ``--allow-untrusted`` exits 0);
128 + N when signal N stopped it (the state is saved, ``--resume``
continues); 1 on an error (its message names the file or option and the
fix), e.g. a work dir another run holds (docs/usage.md, "Exit status").
"""
import argparse
import os
import os.path as osp
import sys

from mmengine.config import DictAction

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import mmseg_moase  # noqa: E402,F401  (registers loops, methods, models)
from mmseg_moase.apis.ctta import (LAUNCHERS, prepare_ctta_config,  # noqa: E402
                                   run_ctta)
from mmseg_moase.evaluation.verdict import EXIT_UNTRUSTED  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='MMSeg continual test-time adaptation (CTTA)')
    parser.add_argument('config', help='CTTA config file path')
    parser.add_argument(
        'checkpoint',
        help='source checkpoint: mmseg 1.x, or the original NVlabs SegFormer '
        'file (converted in memory)')
    parser.add_argument('--work-dir',
                        help='where results, logs and the resume state go '
                        '(default: ./work_dirs/<config name>)')
    parser.add_argument('--resume', action='store_true',
                        help='continue an interrupted run from the state saved '
                        'in the work dir')
    parser.add_argument('--force', action='store_true',
                        help='with --resume: continue a state written with '
                        'other settings (recorded in the results)')
    parser.add_argument('--allow-untrusted', action='store_true',
                        help='exit 0 even when the table is not trustworthy '
                        '(more than ctta_cfg.max_skipped_share of the updates '
                        'skipped; default: exit 3); the verdict is still '
                        'logged and written to ctta_results.json')
    parser.add_argument('--out-preds',
                        help='save predictions as label-ID PNGs under this folder')
    parser.add_argument('--seed', type=int, help='random seed')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override settings of the config, key=value pairs, as in mmseg')
    # Only the launchers that are tested: on a Slurm or MPI cluster, start
    # the ranks with torchrun inside the job (tools/dist_test_ctta.sh).
    parser.add_argument('--launcher', choices=list(LAUNCHERS),
                        default='none',
                        help='job launcher (pytorch: torchrun, see '
                        'tools/dist_test_ctta.sh; under Slurm or MPI run '
                        'torchrun inside the job)')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def main(argv=None) -> int:
    """Run the tool; returns the exit status (see the module docstring)."""
    args = parse_args(argv)
    cfg = prepare_ctta_config(args.config, args.checkpoint, args.work_dir,
                              args.cfg_options, args.launcher, args.resume,
                              args.out_preds, args.seed, force=args.force)
    metrics = run_ctta(cfg)
    if metrics.get('trusted', True) or args.allow_untrusted:
        return 0
    return EXIT_UNTRUSTED


if __name__ == '__main__':
    sys.exit(main())
