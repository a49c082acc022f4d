"""Loggers: Lightning's, adjusted where they read badly, and what a finished run gives each one."""
from __future__ import annotations

import csv
from pathlib import Path

from hydra.utils import instantiate
from lightning.pytorch.loggers import MLFlowLogger, WandbLogger
from lightning.pytorch.loggers import TensorBoardLogger as LightningTensorBoardLogger
from omegaconf import DictConfig, OmegaConf


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
    if isinstance(logger, WandbLogger):  # the plots of the run folder (confusion matrix, lr_find)
        for path in sorted(run_dir.glob("*.png")):
            logger.log_image(f"plots/{path.stem}", [str(path)])
    logger.save()
    if isinstance(logger, WandbLogger):  # close this run: the next sweep job in this process
        logger.experiment.finish()             # starts its own (and the offline file is complete)


def record_sweep(loggers: DictConfig, sweep: Path) -> None:
    """A finished sweep's summary (summary.md, .csv, .png from bertlab.analysis.report) for every logger the
    sweep used that can hold it: TensorBoard (text and image, in <sweep>/tensorboard), MLflow
    (a run named after the sweep folder, the files as artifacts, the best value as a metric) and
    W&B (a run with the table and the plot). CSV needs nothing: summary.csv is its form."""
    rows = list(csv.DictReader(open(sweep / "summary.csv", newline="")))
    plot = sweep / "summary.png"
    # the loggers' settings, with the sweep folder where a run folder would be
    nodes = OmegaConf.create({"output_dir": str(sweep), "logger": OmegaConf.to_container(loggers)})
    for name, node in nodes.logger.items():
        target = str(node.get("_target_", ""))
        if target.endswith("TensorBoardLogger"):
            from matplotlib.image import imread
            from torch.utils.tensorboard import SummaryWriter

            with SummaryWriter(str(sweep / "tensorboard")) as writer:
                writer.add_text("sweep/summary", (sweep / "summary.md").read_text())
                if plot.is_file():
                    writer.add_image("sweep/summary", imread(plot)[..., :3], dataformats="HWC")
        elif target.endswith(("MLFlowLogger", "WandbLogger")):
            logger = instantiate(node)
            # the metrics of the job best on the monitored one (summary.csv lists it first)
            best = {k: float(v) for k, v in rows[0].items() if "/" in k and v not in ("", None)}
            logger.log_hyperparams({"sweep": str(sweep), "jobs": len(rows), "best_job": rows[0]["job"]})
            if best:
                logger.log_metrics({f"best/{k}": v for k, v in best.items()})
            if isinstance(logger, MLFlowLogger):
                for path in (sweep / "summary.md", sweep / "summary.csv", plot):
                    if path.is_file():
                        logger.experiment.log_artifact(logger.run_id, str(path))
                logger.finalize("success")
            else:
                logger.log_table("sweep/summary", columns=list(rows[0]),
                                 data=[list(r.values()) for r in rows])
                if plot.is_file():
                    logger.log_image("sweep/summary_plot", [str(plot)])
                logger.experiment.finish()
