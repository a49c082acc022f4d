"""The Lightning Trainer of a run: how long it trains (the budget), in which precision, with which
callbacks and logger."""
from __future__ import annotations

import logging

from hydra.utils import instantiate
from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint
from omegaconf import DictConfig, OmegaConf

from bertlab import hydra_state
from bertlab.budget import plan
from bertlab.callbacks.keep_latest import KeepLatest
from bertlab.callbacks.unfreeze import UnfreezeAt
from bertlab.plugins import choose_precision, hardware, trainer_plugins, uses_cuda
from bertlab.resolvers import recommended_lr

log = logging.getLogger(__name__)


def training_length(cfg: DictConfig, rows: int, val_rows: int | None) -> tuple[dict, dict]:
    """Trainer arguments for how long to train and how often to validate, and their record for
    metrics.json: the budget rule (bertlab.budget) unless max_epochs or trainer.max_steps is given
    (then early stopping and the best checkpoint are as configured)."""
    t = cfg.trainer
    max_steps = t.get("max_steps")
    if cfg.max_epochs is not None or max_steps not in (None, -1):
        given = {"max_epochs": cfg.max_epochs, "max_steps": max_steps if max_steps is not None else -1,
                 "val_check_interval": t.get("val_check_interval") or 1.0}
        return given, {**given, "rows": rows, "keep": "best", "why": "given: " + ", ".join(
            f"{k}={v}" for k, v in given.items() if k != "val_check_interval" and v not in (None, -1))}
    devices = t.get("devices", 1)
    processes = devices if isinstance(devices, int) and devices > 0 else 1
    b = plan(rows, cfg.batch_size, int(t.get("accumulate_grad_batches") or 1), processes,
             val_rows=val_rows, **OmegaConf.to_container(cfg.budget))
    args = {"max_epochs": b.epochs, "max_steps": b.max_steps,
            "val_check_interval": t.get("val_check_interval") or b.val_check_interval}
    return args, {**b.as_dict(), "val_check_interval": args["val_check_interval"]}


def decide(cfg: DictConfig, rows: int, val_rows: int | None) -> tuple[dict, dict]:
    """(Trainer arguments for how long, the record of what was chosen and why): the budget for
    `rows` training and `val_rows` validation rows and the precision (which it also sets in
    cfg.trainer); both logged."""
    length, budget = training_length(cfg, rows, val_rows)
    log.info("budget: %s (max_epochs=%s, max_steps=%s, val_check_interval=%s)", budget["why"],
             length["max_epochs"], length["max_steps"], length["val_check_interval"])
    precision, why = choose_precision(str(cfg.trainer.get("precision")),
                                      hardware(uses_cuda(cfg.trainer)))
    own = recommended_lr(cfg.model)
    log.info("precision: %s (%s); lr %g%s", precision, why, cfg.lr,
             "" if cfg.lr == own else f" (the model's own: {own})")
    cfg.trainer.precision = precision
    return length, {"budget": budget, "precision": {"value": precision, "why": why}}


def callbacks(cfg: DictConfig, keep_last: bool = False) -> list:
    """The `callbacks` group's, plus gradual unfreezing and an Optuna trial's pruning report.
    `keep_last` (the budget's rule for a small validation split): no early stopping, and the
    best-by-monitor checkpoint holds the latest weights instead."""
    found = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c]
    if keep_last:
        found = [c for c in found if not isinstance(c, EarlyStopping)]
        found = [KeepLatest.replacing(c) if isinstance(c, ModelCheckpoint) and c.monitor else c
                 for c in found]
    if not cfg.get("logger"):  # ~logger: no curves, so nothing for the lr monitor to write to
        found = [c for c in found if not isinstance(c, LearningRateMonitor)]
    if cfg.model.get("unfreeze_at_epoch") is not None:
        found.append(UnfreezeAt(cfg.model.unfreeze_at_epoch))
    if cfg.get("optuna_trial") is not None:  # a trial of hparams_search: report the curve
        from bertlab.callbacks.optuna_pruning import OptunaPruning

        sweep_dir, study, pruner, storage = hydra_state.sweep()
        found.append(OptunaPruning(sweep_dir, study, cfg.optuna_trial, cfg.monitor, pruner, storage))
    return found


def build_trainer(cfg: DictConfig, length: dict, resume_step: int, keep_last: bool = False):
    """The Trainer of `cfg.trainer` with the run's callbacks, logger and plugins."""
    plugins, replaced = trainer_plugins(cfg.trainer)  # atomic checkpoints; bf16 with fused steps
    return instantiate(cfg.trainer, callbacks=callbacks(cfg, keep_last), logger=loggers(cfg, resume_step),
                       plugins=plugins, **{**replaced, **length})


def loggers(cfg: DictConfig, resume_step: int) -> list | bool:
    """The `logger` group's loggers (False: none)."""
    found = []
    for node in (cfg.get("logger") or {}).values():
        extra = {}
        if cfg.get("resume") and node._target_.endswith("TensorBoardLogger"):
            extra = {"purge_step": resume_step}  # hide what the interrupted part logged after it
        found.append(instantiate(node, **extra))
    return found or False
