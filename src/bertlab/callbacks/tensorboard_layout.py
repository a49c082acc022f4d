"""TensorBoard's Custom Scalars tab: train and validation on one chart, per metric."""
from __future__ import annotations

import lightning as L
from lightning.pytorch.loggers import TensorBoardLogger


class TensorBoardLayout(L.Callback):
    """At the start of training, a layout with one chart per metric that holds its train and
    validation curves together (loss first), so over- and underfitting show on one card.
    Hand-written because Lightning writes no layout; TensorBoard's add_custom_scalars does."""

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.global_step:  # resumed: the layout was written at the start
            return
        names = ["loss", *pl_module.task.metrics]
        charts = {name: ["Multiline", [f"^train/{name}(_epoch)?$", f"^val/{name}$"]] for name in names}
        charts["learning rate"] = ["Multiline", ["^train/lr/"]]
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.experiment.add_custom_scalars({"train and validation": charts})
