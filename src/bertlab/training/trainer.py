"""The Lightning Trainer of a run: how long it trains (the budget), in which precision, with which
callbacks and logger."""
from __future__ import annotations

import logging
import math

from hydra.utils import instantiate
from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint
from omegaconf import DictConfig, OmegaConf

from bertlab.cli import hydra_state
from bertlab.training.budget import given_length, plan
from bertlab.callbacks.keep_latest import KeepLatest
from bertlab.callbacks.soup import CheckpointSoup
from bertlab.callbacks.unfreeze import UnfreezeAt
from bertlab.training.plugins import choose_precision, hardware, trainer_plugins, uses_cuda
from bertlab.cli.resolvers import recommended_lr

log = logging.getLogger(__name__)


def epoch_rows(rows: int, limit, batch_size: int, processes: int) -> int:
    """The training rows one epoch reads under trainer.limit_train_batches (a fraction or a
    batch count; None: all)."""
    if limit is None:
        return rows
    if isinstance(limit, int) or limit > 1:
        return min(rows, int(limit) * batch_size * processes)
    return max(1, math.floor(rows * limit))


def training_length(cfg: DictConfig, rows: int, val_rows: int | None, val_trains: bool = False,
                    passes: int | None = None) -> tuple[dict, dict]:
    """Trainer arguments for how long to train and how often to validate, and their record for
    metrics.json (`given`: what cfg.trainer set; `chosen`: what the budget added). The budget
    rule (bertlab.training.budget) runs over the rows an epoch really reads (limit_train_batches); a
    length the user set (max_epochs, max_steps) is trained as set, and an explicit max_steps
    shorter than an epoch is still validated budget.validations times, the best kept;
    `val_trains`: there is no validation split (its `val_rows` rows train), so none is run;
    `passes`: budget.one_pass's epochs (training/plan.py: one_pass)."""
    t = cfg.trainer
    given = given_length(t)
    devices = t.get("devices", 1)
    processes = devices if isinstance(devices, int) and devices > 0 else 1
    accumulate = int(t.get("accumulate_grad_batches") or 1)
    rules = {k: v for k, v in OmegaConf.to_container(cfg.budget).items()
             if k not in ("time", "small_data", "one_pass")}
    b = plan(epoch_rows(rows, given.get("limit_train_batches"), cfg.batch_size, processes),
             cfg.batch_size, accumulate, processes, val_rows=val_rows, val_trains=val_trains,
             passes=passes, **rules)
    args = {"max_epochs": b.epochs, "max_steps": b.max_steps, "val_check_interval": b.val_check_interval}
    record = {**b.as_dict(), "rows": rows}
    if cfg.budget.get("time") is not None:  # the data's budget in steps, at most; the time plans them
        cap = b.epochs * b.steps_per_epoch if b.epochs > 1 else b.max_steps
        args = {"max_epochs": b.epochs, "max_steps": cap, "check_val_every_n_epoch": None,
                "val_check_interval": -(-cap // b.validations) * accumulate}
        record["time"] = {"planned": True}
    if "max_epochs" in given or "max_steps" in given:  # a length the user set: trained as set
        steps = given.get("max_steps", -1)
        args = {"max_epochs": given.get("max_epochs"), "max_steps": steps, "val_check_interval": 1.0}
        if "max_epochs" not in given and steps < b.steps_per_epoch:  # under one epoch
            args["val_check_interval"] = max(1, steps // cfg.budget.validations) * accumulate
        record = {"rows": rows, "steps_per_epoch": b.steps_per_epoch, "keep": "best",
                  "why": "given: " + ", ".join(f"{k}={v}" for k, v in given.items()
                                               if k in ("max_epochs", "max_steps"))}
    if "check_val_every_n_epoch" in given and isinstance(args["val_check_interval"], int):
        args["val_check_interval"] = 1.0  # (a batch count would then count across epochs)
        args.pop("check_val_every_n_epoch", None)
    args.update({k: v for k, v in given.items() if k in args})
    if "val_check_interval" in given and args.get("check_val_every_n_epoch", 1) is None \
            and not isinstance(given["val_check_interval"], int):
        args.pop("check_val_every_n_epoch")  # (a fraction of an epoch needs Lightning's default)
    if val_trains:  # nothing to validate (Lightning's sanity check included)
        args.update(limit_val_batches=0, num_sanity_val_steps=0)
        record["validations"] = 0
    record.update({k: args[k] for k in ("max_epochs", "max_steps", "val_check_interval")},
                  given=given, chosen={k: v for k, v in args.items() if k not in given})
    return args, record


def decide(cfg: DictConfig, rows: int, val_rows: int | None, lr: float, val_trains: bool = False,
           passes: int | None = None) -> tuple[dict, dict]:
    """(Trainer arguments for how long, the record of what was chosen and why): the budget for
    `rows` training and `val_rows` validation rows (`val_trains`: rows that train instead) and
    the precision; both logged, with `lr` (`passes`: budget.one_pass's epochs)."""
    length, budget = training_length(cfg, rows, val_rows, val_trains, passes)
    log.info("budget: %s (given: %s; chosen: %s)", budget["why"], ", ".join(
        f"trainer.{k}={v}" for k, v in budget["given"].items()) or "nothing", ", ".join(
        f"{k}={v}" for k, v in budget["chosen"].items()) or "nothing")
    precision, why = choose_precision(str(cfg.trainer.get("precision")),
                                      hardware(uses_cuda(cfg.trainer)))
    own = recommended_lr(cfg.model)
    log.info("precision: %s (%s); lr %g%s", precision, why, lr,
             "" if lr == own else f" (the model's own: {own})")
    return length, {"budget": budget, "precision": {"value": precision, "why": why}}


def callbacks(cfg: DictConfig, keep_last: bool = False) -> list:
    """The `callbacks` group's, plus gradual unfreezing and an Optuna trial's pruning report.
    `keep_last` (the budget's rule for a small validation split): no early stopping, and the
    best-by-monitor checkpoint holds the latest weights instead."""
    found = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c]
    if keep_last:
        if any(isinstance(c, CheckpointSoup) for c in found):
            log.info("soup: off; the validation split is too small to rank checkpoints by "
                     "(budget.trust_val_rows): the last weights are kept")
        found = [c for c in found if not isinstance(c, (EarlyStopping, CheckpointSoup))]
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


def build_trainer(cfg: DictConfig, length: dict, resume_step: int, keep_last: bool = False,
                  extra: list = ()):
    """The Trainer of `cfg.trainer` with the run's callbacks (and `extra` ones), logger and plugins."""
    plugins, replaced = trainer_plugins(cfg.trainer)  # atomic checkpoints; bf16 with fused steps
    found, loggers_ = callbacks(cfg, keep_last) + list(extra), loggers(cfg, resume_step)
    # model.compile: validate and test under no_grad, whose graph fit's validation built already
    # (Lightning's inference_mode makes inference tensors: another graph to compile); unless set
    graphs = ({"inference_mode": False} if cfg.model.get("compile")
              and "inference_mode" not in cfg.trainer else {})
    try:
        return instantiate(cfg.trainer, callbacks=found, logger=loggers_, plugins=plugins,
                           **{**replaced, **length, **graphs})
    except Exception as e:  # Lightning refuses a trainer.* value it cannot use: the user's to fix
        from bertlab.errors import ConfigError

        cause = e.__cause__ or e
        if type(cause).__name__ not in ("MisconfigurationException", "ValueError", "TypeError"):
            raise
        detail = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
        raise ConfigError(f"Lightning's Trainer refuses the trainer settings: {detail} (see "
                          f"`python train.py --cfg job --package trainer`)") from e


def loggers(cfg: DictConfig, resume_step: int) -> list | bool:
    """The `logger` group's loggers (False: none)."""
    found = []
    for node in (cfg.get("logger") or {}).values():
        extra = {}
        if cfg.get("resume") and node._target_.endswith("TensorBoardLogger"):
            extra = {"purge_step": resume_step}  # hide what the interrupted part logged after it
        found.append(instantiate(node, **extra))
    return found or False
