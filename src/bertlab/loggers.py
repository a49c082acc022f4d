"""Loggers: Lightning's, adjusted where they read badly."""
from __future__ import annotations

from lightning.pytorch.loggers import TensorBoardLogger as LightningTensorBoardLogger


class TensorBoardLogger(LightningTensorBoardLogger):
    """Lightning's TensorBoard logger without the `epoch` card that Lightning adds to every write
    (the curves' x axis is already the step; the card sorted first, above loss and metrics).
    Hand-written because Lightning has no switch for it."""

    def log_metrics(self, metrics: dict, step: int | None = None) -> None:
        metrics = {k: v for k, v in metrics.items() if k != "epoch"}
        if metrics:
            super().log_metrics(metrics, step)
