"""A Lightning callback for benchmarks: after each validation inside fit, one JSON line with the
optimizer step, the training seconds so far (validation excluded, as the peer's --eval-every
counts them) and the validation metrics. Used by time_to_quality.py through
`+callbacks.curve._target_=curve.Curve` with benchmarks/ on PYTHONPATH; not part of bertlab."""
from __future__ import annotations

import json
import time

from lightning.pytorch.callbacks import Callback


class Curve(Callback):
    def __init__(self, path: str) -> None:
        self.path, self.start, self.paused, self.val_start = path, None, 0.0, None

    def on_train_start(self, trainer, pl_module) -> None:
        self.start = time.perf_counter()

    def on_validation_start(self, trainer, pl_module) -> None:
        self.val_start = time.perf_counter()

    def on_validation_end(self, trainer, pl_module) -> None:
        if self.start is None or trainer.sanity_checking or self.val_start is None:
            return
        train_s = self.val_start - self.start - self.paused
        self.paused += time.perf_counter() - self.val_start
        point = {"step": trainer.global_step, "train_s": round(train_s, 1),
                 **{k: round(float(v), 4) for k, v in trainer.callback_metrics.items()
                    if k.startswith("val/")}}
        with open(self.path, "a") as f:
            f.write(json.dumps(point) + "\n")
