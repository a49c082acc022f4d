"""budget.time: when the run began, what an earlier part of it spent, and the callback and hard
stop that fit the training to the time left (bertlab/callbacks/time_budget.py)."""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from omegaconf import DictConfig

from bertlab.callbacks.time_budget import AFTER, TimeBudget
from bertlab.cli import hydra_state, runs
from bertlab.cli.runs import STARTED
from bertlab.errors import ConfigError
from bertlab.training.budget import parse_time

log = logging.getLogger(__name__)


def padded_tokens(dm, split: str) -> list[int]:
    """The padded tokens of each evaluation batch of `split`, in the order they run."""
    if split not in dm.dataset:
        return []
    lengths = sorted(dm.dataset[split]["length"][:])
    size = dm.eval_batch_size
    return [len(lengths[i:i + size]) * lengths[i:i + size][-1] for i in range(0, len(lengths), size)]


def soup_validations(cfg: DictConfig) -> int:
    """The validation passes callbacks=soup makes after training (one per checkpoint it tries)."""
    soup = (cfg.get("callbacks") or {}).get("soup")
    return int(soup.get("save_top_k") or 1) - 1 if soup else 0


def refit_passes(dm) -> float:
    """model.head_refit's work after training, in validation passes: the best checkpoint's
    validation before and after, and one pass over the training rows."""
    return 2 + sum(padded_tokens(dm, "train")) / max(1, sum(padded_tokens(dm, "validation")))


def time_budget(cfg: DictConfig, length: dict, record: dict, dm, model, started: float,
                checkpoint: Path | None, refit: bool = False) -> tuple[TimeBudget | None, dict]:
    """(The callback that plans the run to budget.time, or None when the user's max_epochs or
    max_steps sets the length; Lightning's max_time, the hard stop), or (None, {}) without a
    budget.time. A run started from a checkpoint counts the time its earlier parts spent;
    `refit`: model.head_refit's passes are kept for after training too."""
    if cfg.budget.get("time") is None:
        return None, {}
    seconds = parse_time(cfg.budget.time)
    # a command counts from its process's start (cli/entry.py); a sweep's job, a cv fold or a
    # run started in-process (a test) from its own
    own = hydra_state.in_multirun() or cfg.get("cv_fold") is not None
    began = started if own else float(os.environ.get(STARTED, started))
    spent, trained = 0.0, 0.0
    if checkpoint is not None:  # resumed: the earlier parts' wall time, and the Timer's
        state = runs.read_checkpoint(checkpoint, mmap=True).get("callbacks", {})
        spent = float(state.get("TimeBudget", {}).get("spent", 0.0))
        trained = float(state.get("Timer", {}).get("time_elapsed", {}).get("train", 0.0))
    now = time.time()
    left = began + seconds - spent - now
    if left < 2 * AFTER:
        raise ConfigError(
            f"budget.time={cfg.budget.time} is shorter than the start-up: {now - began + spent:.0f} s "
            f"went before training could begin (start, reading and tokenizing the data, loading the "
            f"model{', and the earlier parts of this run' if spent else ''}); give more, e.g. "
            f"budget.time={max(60, int(2 * (now - began + spent)))}s")
    stop = max(1, int(trained + left - AFTER))  # (Lightning's Timer counts from the training's start)
    hard = {"max_time": f"{stop // 86400:02d}:{stop // 3600 % 24:02d}:{stop // 60 % 60:02d}:{stop % 60:02d}"}
    planned = record.get("time", {}).get("planned", False)
    record.setdefault("time", {}).update(seconds=seconds, began_before_training=round(now - began, 1),
                                        spent_before=round(spent, 1))
    callback = TimeBudget(
        began, seconds, length["max_steps"], record.get("validations", cfg.budget.validations),
        int(cfg.trainer.get("accumulate_grad_batches") or 1),
        plan_validation=planned and "val_check_interval" not in record["given"]
        and "check_val_every_n_epoch" not in record["given"],
        schedule=model.schedule_lambdas, val_tokens=padded_tokens(dm, "validation"),
        test_tokens=sum(padded_tokens(dm, "test")), spent=spent, plan_steps=planned,
        extra_validations=soup_validations(cfg) + (refit_passes(dm) if refit else 0))
    log.info("budget.time: %gs for the whole run; %.0f s gone before training, %.0f s left "
             "(Lightning's max_time stops training at %ss at the latest)%s", seconds, now - began + spent,
             left, stop, "" if planned else
             "; the length is the one given (max_epochs or max_steps), not planned to the time")
    return callback, hard
