"""Loggers: Lightning's, adjusted where they read badly, and what a finished run gives each one."""
from __future__ import annotations

from pathlib import Path

from lightning.pytorch.loggers import MLFlowLogger, WandbLogger
from lightning.pytorch.loggers import TensorBoardLogger as LightningTensorBoardLogger


class TensorBoardLogger(LightningTensorBoardLogger):
    """Lightning's TensorBoard logger without the `epoch` card that Lightning adds to every write
    (the curves' x axis is already the step; the card sorted first, above loss and metrics).
    Hand-written because Lightning has no switch for it."""

    def log_metrics(self, metrics: dict, step: int | None = None) -> None:
        metrics = {k: v for k, v in metrics.items() if k != "epoch"}
        if metrics:
            super().log_metrics(metrics, step)


def write_hparams(logger: LightningTensorBoardLogger, params: dict, metrics: dict) -> None:
    """TensorBoard's HPARAMS record, once, at the end, naming the scalar tags that hold the
    final values. Lightning's log_hyperparams(params, metrics) would also write the metrics as
    extra points at step 0 of the curves, so the record is written with torch's summary helper."""
    from torch.utils.tensorboard.summary import hparams

    writer = logger.experiment._get_file_writer()
    for summary in hparams(params, metrics):
        writer.add_summary(summary)
    writer.flush()


def record_run(logger, run_dir: Path, params: dict, finals: dict) -> None:
    """What a finished run gives a logger beyond its curves (the final metrics reached every
    logger from validate/test): the hyperparameters, and to a tracker that stores files (MLflow)
    the run folder's files, checkpoints and event files aside."""
    if isinstance(logger, LightningTensorBoardLogger):
        write_hparams(logger, params, finals)  # the HPARAMS tab, with the final metrics
    else:
        logger.log_hyperparams(params)
    if isinstance(logger, MLFlowLogger):
        files = [p for p in sorted(run_dir.iterdir()) if p.is_file() and not p.name.startswith(".")]
        files += sorted(run_dir.glob(".hydra/*.yaml"))
        for path in files:
            folder = str(path.parent.relative_to(run_dir)) if path.parent != run_dir else None
            logger.experiment.log_artifact(logger.run_id, str(path), folder)
    logger.save()
    if isinstance(logger, WandbLogger):  # close this run: the next sweep job in this process
        logger.experiment.finish()             # starts its own (and the offline file is complete)
