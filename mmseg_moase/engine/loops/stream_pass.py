"""One (round, domain) pass of the CTTA stream: what its steps share, and
its record in the results table."""
import dataclasses
import time
from typing import Any, Callable, Dict, List, Tuple


@dataclasses.dataclass
class StreamPass:
    """What the steps of one (round, domain) pass share."""
    pass_idx: int
    round_idx: int
    name: str
    label: str
    dataset: Any
    loader: Any
    shares: List[Tuple[int, int]]
    evaluator: Any
    start: int  # first image (a resumed pass's position)
    seconds: float  # time spent before this process took the pass up
    skipped0: int  # the method's skipped updates when the pass began
    miou_fn: Callable[[], float]
    t0: float = 0.0  # perf_counter() at the first step

    def elapsed(self) -> float:
        """Seconds spent on the pass, by this process and before it."""
        return self.seconds + time.perf_counter() - self.t0

    def record(self, skipped_updates: int) -> Dict[str, Any]:
        """Score the pass (its evaluator over every image): its row of the
        results table, given the method's skipped updates so far."""
        seconds = self.elapsed()
        n = len(self.dataset)
        metrics = self.evaluator.evaluate(n)
        return dict(
            round=self.round_idx, domain=self.name,
            mIoU=float(metrics.get('mIoU', float('nan'))),
            aAcc=metrics.get('aAcc'), mAcc=metrics.get('mAcc'),
            per_class_iou={k[4:]: v for k, v in metrics.items()
                           if k.startswith('IoU.')},
            images=n, seconds=round(seconds, 3),
            seconds_per_image=round(seconds / max(n, 1), 4),
            skipped_updates=skipped_updates - self.skipped0)
