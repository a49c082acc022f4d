"""Checks of composed configs that need no torch: `train.py lr=-1` (or a missing data file, or
`eval.py split=nosuch`) answers at once."""
from __future__ import annotations


from omegaconf import DictConfig, OmegaConf

from bertlab.errors import ConfigError
from bertlab.task import Task, task_of

PRECISIONS = ("auto", "32-true", "32", "bf16-mixed", "16-mixed", "bf16-true", "16-true", "64-true")


def positive(key: str, value, integer: bool, optional: bool = False) -> None:
    if optional and value is None:
        return
    number = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not number or not value > 0:
        kind = "a positive integer" if integer else "a positive number"
        raise ConfigError(f"{key}={value!r} is not valid; use {kind}"
                          + (" (or null: the budget decides)" if optional else ""))


def number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def integer(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


SWITCH = (lambda v: isinstance(v, bool), "true or false")  # (a string would read as true)
POSITIVE_INTEGER = (lambda v: integer(v) and v > 0, "a positive integer")

# key -> (is the value valid, what would be valid); null is valid where the key allows it
RANGES = {
    "seed": (lambda v: integer(v) and 0 <= v < 2**32, "an integer in [0, 4294967295] (numpy's seeds)"),
    "weight_decay": (lambda v: number(v) and v >= 0, "a number >= 0"),
    "regularization.l1": (lambda v: number(v) and v >= 0, "a number >= 0"),
    "regularization.rdrop": (lambda v: number(v) and v >= 0, "a number >= 0 (0: off)"),
    "scheduler.warmup": (lambda v: v is None or number(v) and v >= 0,
                         "a fraction of the steps in [0, 1) or a step count >= 1"),
    "scheduler.schedule.gamma": (lambda v: number(v) and 0 < v <= 1, "a factor in (0, 1]"),
    "scheduler.schedule.step_size": (lambda v: integer(v) and v > 0, "a positive integer"),
    "scheduler.schedule.patience": (lambda v: integer(v) and v >= 0, "an integer >= 0"),
    "scheduler.schedule.factor": (lambda v: number(v) and 0 < v < 1, "a factor in (0, 1)"),
    "optimizer.momentum": (lambda v: number(v) and 0 <= v < 1, "a number in [0, 1)"),
    "optimizer.alpha": (lambda v: number(v) and 0 < v < 1, "a number in (0, 1)"),
    "optimizer.eps": (lambda v: number(v) and v > 0, "a small positive number"),
    "layer_decay": (lambda v: v is None or number(v) and 0 < v <= 1, "a factor in (0, 1], or null"),
    "loss.gamma": (lambda v: number(v) and v >= 0, "a number >= 0 (0: plain cross-entropy)"),
    "loss.label_smoothing": (lambda v: number(v) and 0 <= v < 1, "a fraction in [0, 1)"),
    "loss.delta": (lambda v: number(v) and v > 0, "a positive number"),
    "data.max_samples": (lambda v: v is None or integer(v) and v > 0,
                         "a positive number of rows, or null (all)"),
    "data.val_size": (lambda v: number(v) and 0 <= v < 1, "a fraction in [0, 1)"),
    "data.exclude_top": (lambda v: v is None or integer(v) and v > 0,
                         "a positive number of rows, or null (every row the list names)"),
    "data.max_val_rows": (lambda v: v is None or integer(v) and v > 0,
                          "a positive number of rows, or null (val_size alone decides)"),
    "data.test_size": (lambda v: number(v) and 0 <= v < 1, "a fraction in [0, 1)"),
    "data.num_workers": (lambda v: integer(v) and v >= 0, "an integer >= 0"),
    "data.pad_to_multiple_of": (lambda v: v is None or integer(v) and v > 0,
                                "a positive integer, or null"),
    "trainer.max_steps": (lambda v: v is None or integer(v) and (v == -1 or v > 0),
                          "a positive integer, or -1 (no limit)"),
    "trainer.gradient_clip_val": (lambda v: v is None or number(v) and v >= 0,
                                  "a number >= 0, or null (no clipping)"),
    "trainer.accumulate_grad_batches": (lambda v: integer(v) and v > 0, "a positive integer"),
    "trainer.log_every_n_steps": (lambda v: integer(v) and v > 0, "a positive integer"),
    "trainer.num_sanity_val_steps": (lambda v: integer(v) and v >= -1, "an integer >= -1"),
    "trainer.val_check_interval": (lambda v: v is None or integer(v) and v > 0
                                   or number(v) and 0 < v <= 1,
                                   "a fraction of an epoch in (0, 1], a batch count, or null"),
    "budget.min_steps": (lambda v: integer(v) and v > 0, "a positive integer"),
    "budget.max_epochs": (lambda v: integer(v) and v > 0, "a positive integer"),
    "budget.max_steps": (lambda v: integer(v) and v > 0, "a positive integer"),
    "budget.validations": (lambda v: integer(v) and v > 0, "a positive integer"),
    "budget.trust_val_rows": (lambda v: integer(v) and v >= 0,
                              "an integer >= 0 (0: always pick the best validation)"),
    "budget.small_data.max_rows_a_class": (lambda v: v is None or integer(v) and v >= 0,
                                           "an integer >= 0, or null (never)"),
    "budget.small_data.batch_size": (lambda v: v is None or integer(v) and v > 0,
                                     "a positive integer, or null (batch_size as it is)"),
    "budget.small_data.max_lr": (lambda v: v is None or number(v) and v > 0,
                                 "a positive number, or null (lr as it is)"),
    "budget.one_pass.epochs": (lambda v: v is None or integer(v) and v > 0,
                               "a positive integer, or null (off: one pass as the budget plans it)"),
    "budget.one_pass.batch_size": (lambda v: v is None or integer(v) and v > 0,
                                   "a positive integer, or null (batch_size as it is)"),
    "budget.one_pass.max_lr": (lambda v: v is None or number(v) and v > 0,
                               "a positive number, or null (lr as it is)"),
    "callbacks.early_stopping.patience": (lambda v: integer(v) and v >= 0, "an integer >= 0"),
    "callbacks.early_stopping.min_delta": (lambda v: number(v) and v >= 0, "a number >= 0"),
    "callbacks.preemption.every_n_minutes": (lambda v: v is None or number(v) and v > 0,
                                             "a positive number, or null"),
    "callbacks.preemption.every_n_steps": (lambda v: v is None or integer(v) and v > 0,
                                           "a positive integer, or null"),
    "callbacks.pruning.sparsity": (lambda v: number(v) and 0 < v < 1, "a fraction in (0, 1)"),
    "model.freeze_layers": (lambda v: integer(v) and v >= 0, "an integer >= 0"),
    "model.unfreeze_at_epoch": (lambda v: v is None or integer(v) and v >= 0,
                                "an epoch >= 0, or null"),
    "tune_lr.min_lr": (lambda v: number(v) and v > 0, "a positive number"),
    "tune_lr.max_lr": (lambda v: number(v) and v > 0, "a positive number"),
    "tune_lr.num_training": (lambda v: integer(v) and v > 1, "an integer > 1"),
    "distill.alpha": (lambda v: number(v) and 0 <= v <= 1, "a weight in [0, 1]"),
    "distill.temperature": (lambda v: number(v) and v > 0, "a number > 0"),
    "distill.layers": (lambda v: v is None or integer(v) and v > 0,
                       "a positive number of layers, or null (the model= option)"),
    "model.lora.r": (lambda v: integer(v) and v > 0, "a positive integer"),
    "model.lora.alpha": (lambda v: number(v) and v > 0, "a positive number"),
    "model.lora.dropout": (lambda v: number(v) and 0 <= v < 1, "a fraction in [0, 1)"),
    **{key: SWITCH
       for key in ("calibrate", "tune_lr.apply", "data.strict", "data.drop_duplicates",
                   "data.group_by_length", "model.pretrained", "model.compile",
                   "model.freeze_embeddings", "model.freeze_encoder", "model.top_layer_cls_only",
                   "trainer.enable_progress_bar")},
}


def check_ranges(cfg: DictConfig, ranges: dict = RANGES) -> None:
    """Every key of `ranges` that the config has must hold a valid value, inside a group."""
    missing = object()
    for key, (valid, what) in ranges.items():
        parent = key.rpartition(".")[0]
        table = OmegaConf.select(cfg, parent, default=missing) if parent else cfg
        if table is not missing and not isinstance(table, DictConfig):  # budget=5
            raise ConfigError(f"{parent}={table!r} is not valid; it is a group of settings: set "
                              f"its keys instead, e.g. {key}=...")
        value = OmegaConf.select(cfg, key, default=missing)
        if value is not missing and not valid(value):
            raise ConfigError(f"{key}={value!r} is not valid; use {what}")


HIGHER_IS_BETTER = ("acc", "f1", "pearson", "spearman")  # which way each metric improves


def resolve_monitor(monitor: str, mode: str, task: str | Task) -> tuple[str, str]:
    """(monitor, mode) for `task`: auto picks accuracy (classes), macro-F1 (multi-label) or the
    loss (regression); a validation loss picks an over-confident early epoch on small data. A
    metric the task does not log is refused; mode auto follows the metric."""
    task = task_of(task)
    if monitor == "auto":
        monitor = task.monitor
    valid = [f"val/{m}" for m in (*task.metrics, "loss")]
    if monitor not in valid:
        raise ConfigError(f"monitor={monitor} is not a metric of this {task} task; "
                          f"use one of {', '.join(valid)} (or auto)")
    if mode == "auto":
        mode = "max" if monitor.split("/")[1] in HIGHER_IS_BETTER else "min"
    return monitor, mode


def check_read_kwargs(value, key: str) -> None:
    """read_kwargs are the reader's own options: a dict of them (or null)."""
    if value is not None and not isinstance(value, DictConfig) and not isinstance(value, dict):
        raise ConfigError(f"{key}={value!r} is not valid; give the reader's options as a dict, "
                          f"e.g. {key}={{sep: ';'}} or {key}={{encoding: latin-1}}")


