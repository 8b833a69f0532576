"""One rank of a distributed CTTA run for tests (started by torchrun).

    python -m torch.distributed.run --nproc_per_node 2 tests/dist_ctta_worker.py \
        CONFIG CHECKPOINT WORK_DIR SEED [--unit-checks]

Runs the stream as ``tools/test_ctta.py --launcher pytorch`` does (same config
preparation, the real mmengine Runner), then saves this rank's method state
(student, teacher, optimiser) to ``WORK_DIR/rank<r>_state.pth`` so a test can
compare the ranks. ``--unit-checks`` then runs ``dist_unit_checks.py``'s checks
in the same process group (after the stream: they draw random numbers).
"""
import os.path as osp
import sys

import torch

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import mmseg_moase  # noqa: E402,F401
from mmengine.dist import get_rank  # noqa: E402
from mmseg_moase.apis import build_ctta_runner, prepare_ctta_config  # noqa: E402
from mmseg_moase.utils.dist import end_distributed  # noqa: E402


def main() -> None:
    config, checkpoint, work_dir, seed = sys.argv[1:5]
    cfg = prepare_ctta_config(config, checkpoint, work_dir, launcher='pytorch',
                              seed=int(seed))
    runner = build_ctta_runner(cfg)
    runner.test()
    torch.save(runner.test_loop.method.state_dict(),
               osp.join(work_dir, f'rank{get_rank()}_state.pth'))
    if '--unit-checks' in sys.argv[5:]:
        sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
        from dist_unit_checks import run_checks
        run_checks()
    end_distributed()  # as tools/test_ctta.py (run_ctta) does


if __name__ == '__main__':
    main()
