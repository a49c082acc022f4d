"""tune_lr(cfg): Lightning's learning-rate range test on the configured model and data; then
stop (the plot and the suggestion are in the run folder), or train with the suggested lr."""
from __future__ import annotations

import json
import time
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig

from bertlab.cli import runs
from bertlab.training.checks import check_config
from bertlab.errors import ConfigError
from bertlab.training.loggers import TensorBoardLogger, record_run
from bertlab.training.plugins import trainer_plugins
from bertlab.training.trainer import loggers as build_loggers
from bertlab.training.train import build_data, build_model, fit_and_report, set_up_process


def tune_lr(cfg: DictConfig) -> float:
    """The suggested lr (tune_lr.apply=false), or the score of training with it (true)."""
    started = time.time()
    check_config(cfg)
    if cfg.get("cv") or cfg.get("resume"):
        raise ConfigError(f"the lr range test runs on a new run: drop "
                          f"{'cv=' if cfg.get('cv') else 'resume='}")
    run_dir = Path(cfg.output_dir)
    runs.claim_run_dir(run_dir)
    set_up_process(cfg)
    dm = build_data(cfg, run_dir)
    lr = find_lr(cfg, build_model(cfg, dm), dm, run_dir)
    if not cfg.tune_lr.apply:  # the suggestion and the plot to each tracker (TensorBoard has them)
        for logger in build_loggers(cfg, 0) or []:
            if not isinstance(logger, TensorBoardLogger):
                logger.log_metrics({"tune/suggested_lr": lr}, step=0)
                record_run(logger, run_dir, {k: cfg.tune_lr[k] for k in ("min_lr", "max_lr", "num_training")},
                           {"tune/suggested_lr": lr})
        return lr
    return fit_and_report(cfg, run_dir, None, 0, started, lr=lr)


def find_lr(cfg: DictConfig, model, dm, run_dir: Path) -> float:
    """Lightning's learning-rate range test; the plot goes to lr_find.png and TensorBoard."""
    from lightning.pytorch.tuner import Tuner
    from torch.utils.tensorboard import SummaryWriter

    t = cfg.tune_lr
    plugins, replaced = trainer_plugins(cfg.trainer)
    trainer = instantiate(cfg.trainer, logger=False, callbacks=[], enable_checkpointing=False,
                          plugins=plugins, **replaced,
                          enable_model_summary=False, max_epochs=-1, max_steps=t.num_training,
                          limit_val_batches=0)
    # (epochs unbounded: the test's own step count ends it, even on a small training set)
    finder = Tuner(trainer).lr_find(model, datamodule=dm, min_lr=t.min_lr, max_lr=t.max_lr,
                                    num_training=t.num_training, update_attr=False)
    suggestion = finder.suggestion()
    if suggestion is None:
        raise ConfigError(f"the lr range test found no clear descent over tune_lr.num_training="
                          f"{t.num_training} steps; try more steps or another min_lr/max_lr")
    fig = finder.plot(suggest=True)
    fig.savefig(run_dir / "lr_find.png", dpi=120)
    with SummaryWriter(str(run_dir / "tensorboard")) as writer:
        writer.add_figure("tune/lr_find", fig)
    (run_dir / "lr_find.json").write_text(json.dumps(
        {"suggestion": suggestion, "lr": finder.results["lr"], "loss": finder.results["loss"]}))
    print(f"suggested lr: {suggestion:.3g} (plot: {run_dir / 'lr_find.png'})")
    return float(suggestion)
