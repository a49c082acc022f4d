"""What a run reports, assembled here: metrics.json's fields, how it stopped, the fit diagnosis,
the log's summary lines and TensorBoard's HPARAMS record. A new capability adds its fields here."""
from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path

from lightning.pytorch.callbacks import EarlyStopping, Timer
from lightning.pytorch.callbacks.early_stopping import EarlyStoppingReason
from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import DictConfig

from bertlab.cli import hydra_state
from bertlab.callbacks.pruning import EncoderPruning
from bertlab.callbacks.time_budget import TimeBudget
from bertlab.training.loggers import record_run
from bertlab.cli.resolvers import recommended_lr
from bertlab.cli.runs import read_checkpoint, write_metrics
from bertlab.task import task_of

log = logging.getLogger(__name__)


def stop_reason(trainer) -> str:
    """max_epochs, early stopping, or divergence (EarlyStopping's check for a non-finite metric)."""
    for cb in trainer.callbacks:
        if isinstance(cb, EarlyStopping) and cb.stopping_reason != EarlyStoppingReason.NOT_STOPPED:
            if cb.stopping_reason in (EarlyStoppingReason.NON_FINITE_METRIC,
                                      EarlyStoppingReason.DIVERGENCE_THRESHOLD):
                return f"divergence: {cb.stopping_reason_message}"
            return "early stopping"
        if isinstance(cb, TimeBudget) and (cb.record.get("stopped_early_at_step") is not None
                                           or cb.total < cb.cap):
            return "budget.time"  # (the plan's steps, fewer than the data's budget, or its stop)
        if isinstance(cb, Timer) and cb.time_remaining() is not None and cb.time_remaining() <= 0:
            return "max_time"
    return "max_steps" if trainer.max_steps not in (-1, None) and \
        trainer.global_step >= trainer.max_steps else "max_epochs"


def diagnose(fit: dict, task, counts: list[int] | None) -> str:
    """One line: does the last epoch look over-fitted, under-fitted, or neither?"""
    if not task_of(task).has_classes:
        train, val, r = fit.get("train/mse"), fit.get("val/mse"), fit.get("val/pearson")
        if None in (train, val, r):
            return "unknown: train or val metrics are missing"
        numbers = f"train mse {train:.4f}, val mse {val:.4f}, val pearson {r:.3f}"
        if not r >= 0.1:  # (nan: the predictions do not vary)
            return f"underfitting: {numbers}; try a higher lr or more epochs"
        if val > 1.25 * train:
            return f"overfitting: {numbers}; try more dropout or weight decay, or fewer epochs"
        return f"no sign of over- or underfitting: {numbers}"
    train, val = fit.get("train/acc"), fit.get("val/acc")
    if train is None or val is None:
        return "unknown: train or val metrics are missing"
    numbers = f"train acc {train:.3f}, val acc {val:.3f}"
    majority = max(counts) / sum(counts) if counts else 0.0
    if val <= majority + 0.02:
        return (f"underfitting: {numbers}, no better than always predicting the most common "
                f"label ({majority:.3f}); try a higher lr, more epochs or less freezing")
    if train - val > 0.05:
        return (f"overfitting: {numbers}; try more dropout or weight decay, fewer epochs or "
                f"more data")
    return f"no sign of over- or underfitting: {numbers}"


def outcome(trainer, run_dir: Path, diverged: str | None) -> dict:
    """How the fit ended: status, why it stopped, where it stopped, its best checkpoint."""
    best = getattr(trainer.checkpoint_callback, "best_model_path", "") or None
    stopped_by = f"divergence: {diverged}" if diverged else stop_reason(trainer)
    if any(getattr(c, "pruned", False) for c in trainer.callbacks):
        stopped_by = "pruned by the hyperparameter search"
    status = ("diverged" if stopped_by.startswith("divergence") else
              "pruned" if stopped_by.startswith("pruned") else "finished")
    return {"status": status, "stopped_by": stopped_by, "epochs": trainer.current_epoch,
            "steps": trainer.global_step,
            "best_checkpoint": os.path.relpath(best, run_dir) if best else None,
            "best_epoch": read_checkpoint(Path(best), mmap=True)["epoch"] if best else None}


def run_record(cfg: DictConfig, dm, model, trainer, ended: dict, choices: dict) -> dict:
    """metrics.json before the scores: the task, how the fit ended and what the run chose."""
    fit = {k: float(v) for k, v in trainer.callback_metrics.items()}  # the last epoch's
    weight = getattr(model.loss_fn, "weight", None)  # class weights, if any
    return {"status": ended["status"], "task": str(dm.task), "monitor": cfg.monitor,
            "stopped_by": ended["stopped_by"], "epochs": ended["epochs"], "steps": ended["steps"],
            "best_checkpoint": ended["best_checkpoint"], "best_epoch": ended["best_epoch"],
            "fit": diagnose(fit, dm.task, model.hparams.class_counts) if "validation" in dm.dataset
            else "unknown: no validation split to compare with (too small to carve, its rows trained)",
            "parameters": choices["parameters"],
            "data": {"rows": {s: dm.documents(s) for s in dm.dataset}, **dm.report},
            "loss": {"name": type(model.loss_fn).__name__, "class_weights": None if weight
                     is None else [round(w, 4) for w in weight.tolist()],
                     **({"target_mean_std": model.hparams.target_scale}
                        if model.hparams.get("target_scale") else {})},
            "budget": choices["budget"], "precision": choices["precision"],
            "pooling": choices["pooling"],
            **({"head_init": choices["head_init"]} if "head_init" in choices else {}),
            **{k: choices[k] for k in ("small_data", "one_pass") if k in choices},
            "lr": {"value": cfg.lr, "model_recommends": recommended_lr(cfg.model)}}


def readable_hparams(cfg: DictConfig, choices: dict) -> dict:
    """What a person compares runs by, for TensorBoard's HPARAMS tab."""
    return {
        "lr": cfg.lr, "batch_size": cfg.batch_size, "max_epochs": cfg.max_epochs or -1,
        "weight_decay": cfg.weight_decay, "max_length": cfg.max_length, "seed": cfg.seed,
        "optimizer": choices.get("optimizer") or cfg.optimizer._target_.rsplit(".", 1)[-1],
        "scheduler": choices.get("scheduler") or cfg.scheduler.schedule.get("name")
        or cfg.scheduler.schedule._target_.rsplit(".", 1)[-1],
        "loss": choices.get("loss") or cfg.loss._target_.rsplit(".", 1)[-1],
        "model": choices.get("model") or Path(cfg.model.name_or_path).name,
        "data": choices.get("data") or Path(str(cfg.data.get("train_file"))).name,
        "precision": str(cfg.trainer.get("precision", "32-true")),
    }


def report(cfg: DictConfig, run_dir: Path, metrics: dict, trainer, model, dm, scored: bool,
           started: float, fit_seconds: float) -> None:
    """Finish metrics.json (pruning, the error analysis if the run was `scored`, timings), write
    it, log the summary, and write HPARAMS."""
    from bertlab.analysis.breakdown import analyse

    board = next((lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)), None)
    pruning = [c for c in trainer.callbacks if isinstance(c, EncoderPruning)]
    if pruning:
        metrics["pruning"] = {**pruning[0].report, "after": {cfg.monitor: metrics.get(cfg.monitor)}}
        log.info("pruning: %s", metrics["pruning"])
    if scored and "validation" in dm.dataset:  # (none: too small to carve, its rows trained)
        metrics["analysis"] = analyse(model, dm, "validation", run_dir,
                                      board.experiment if board else None, trainer.global_step)
    elif scored:  # (not the test split: that would be a second pass over it)
        log.info("analysis: no validation split to analyse; `python eval.py run_dir=%s` writes the "
                 "test split's errors and confusion matrix", run_dir)
    metrics["wall_seconds"] = round(time.time() - started, 1)
    metrics["fit_seconds"] = fit_seconds  # training, with its validation passes
    metrics["train_seconds"] = round(fit_seconds - model.fit_validation_seconds, 1)
    write_metrics(run_dir, metrics)
    finals = {k: v for k, v in metrics.items() if "/" in k}
    log.info("final: %s", ", ".join(f"{k}={v:.4f}" for k, v in finals.items()))
    if metrics["status"] == "diverged":
        log.warning("training diverged (%s); lower lr or keep gradient clipping on",
                    metrics["stopped_by"])
    params = {**hydra_state.command_line_values(), **readable_hparams(cfg, hydra_state.choices())}
    for logger in trainer.loggers:  # each logger, in the form it holds them
        if pruning:
            logger.log_metrics({f"pruning/{k}": v for k, v in (
                ("before", pruning[0].report["before"][cfg.monitor]),
                ("after", metrics.get(cfg.monitor))) if v is not None}, step=trainer.global_step)
        record_run(logger, run_dir, params, finals)


def score_of(metrics: dict, monitor: str) -> float:
    """The monitored metric for a sweeper (NaN when missing or not finite)."""
    value = metrics.get(monitor, float("nan"))
    return value if isinstance(value, float) and math.isfinite(value) else float("nan")
