"""Checks of composed configs that need no torch: `train.py lr=-1` (or a missing data file, or
`eval.py split=nosuch`) answers at once."""
from __future__ import annotations

import json

from omegaconf import DictConfig, OmegaConf

from bertlab.errors import ConfigError
from bertlab.choices import LONG_TEXT, PEFT_METHODS, POOLS
from bertlab.hub import check_local, check_max_length
from bertlab.task import TASKS, Task, task_of

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


# logger class -> (the package it needs, how to install it)
TRACKERS = {"MLFlowLogger": ("mlflow", "pip install -e '.[trackers]' (or pip install mlflow)"),
            "WandbLogger": ("wandb", "pip install -e '.[trackers]' (or pip install wandb)"),
            "CometLogger": ("comet_ml", "pip install comet-ml"),
            "NeptuneLogger": ("neptune", "pip install neptune")}


def check_loggers(cfg: DictConfig) -> None:
    """A logger whose package is missing: one line naming what to install (before any work)."""
    import importlib.util

    for name, node in (cfg.get("logger") or {}).items():
        package, how = TRACKERS.get(str(node.get("_target_", "")).rsplit(".", 1)[-1], (None, None))
        if package and importlib.util.find_spec(package) is None:
            raise ConfigError(f"logger={name} needs the {package} package, which is not "
                              f"installed: {how}")
        check_tracking_server(name, node.get("tracking_uri"))


def check_tracking_server(name: str, uri) -> None:
    """A tracking server given by URL answers before training starts: MLflow's client would
    retry an unreachable one for minutes, after the training, with no word."""
    import socket
    from urllib.parse import urlparse

    url = urlparse(str(uri or ""))
    if url.scheme not in ("http", "https") or not url.hostname:
        return
    try:
        socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)),
                                 timeout=5).close()
    except OSError as e:
        raise ConfigError(f"logger.{name}.tracking_uri={uri} cannot be reached ({e.strerror or e}); "
                          f"start the server, or leave tracking_uri out for the local store "
                          f"(outputs/mlflow.db)") from None


def check_model(cfg: DictConfig) -> None:
    """Local model folders exist; max_length fits the limit a local tokenizer declares."""
    check_local(cfg.model.name_or_path)
    folder = check_local(cfg.model.tokenizer, "model.tokenizer")
    declared = folder / "tokenizer_config.json" if folder else None
    if declared and declared.is_file():
        check_max_length(cfg.max_length, json.loads(declared.read_text()).get("model_max_length"))


def check_data(data: DictConfig) -> None:
    """The text, pair and label columns are different columns; a files source's files exist, hold
    rows and share a format."""
    from bertlab.data.sources import SPLITS, check_files

    keys = [k for k in ("text_column", "text_pair_column", "label_column") if data.get(k) is not None]
    for i, a in enumerate(keys):  # one column in two roles: the label as the text trains on the answer
        for b in keys[i + 1:]:
            if str(data[a]) == str(data[b]):
                raise ConfigError(f"data.{a} and data.{b} are both {data[a]!r}; each role needs a "
                                  f"column of its own")
    if data.get("source") == "files":
        files = {s: OmegaConf.select(data, f"{s}_file", throw_on_missing=True) for s in SPLITS}
        check_files({s: str(f) for s, f in files.items() if f}, data.get("format"))


def check_config(cfg: DictConfig) -> None:
    check_ranges(cfg)
    check_loggers(cfg)
    positive("lr", cfg.lr, integer=False)
    for key in ("batch_size", "max_length"):
        positive(key, cfg[key], integer=True)
    positive("max_epochs", cfg.max_epochs, integer=True, optional=True)
    cv = cfg.get("cv")
    if cv is not None and (isinstance(cv, bool) or not isinstance(cv, int) or cv < 2):
        raise ConfigError(f"cv={cv!r} is not valid; use a number of folds >= 2 (e.g. cv=5), or "
                          f"null for no cross-validation")
    fold = cfg.get("cv_fold")
    if fold is not None and (cv is None or isinstance(fold, bool) or not isinstance(fold, int)
                             or not 0 <= fold < cv):
        raise ConfigError(f"cv_fold={fold!r} is not valid; use 0..cv-1 together with cv=K")
    if cfg.mode not in ("min", "max", "auto"):
        raise ConfigError(f"mode={cfg.mode!r} is not valid; use min, max or auto")
    known = sorted({f"val/{m}" for t in TASKS.values() for m in (*t.metrics, "loss")})
    if cfg.monitor != "auto" and cfg.monitor not in known:
        raise ConfigError(f"monitor={cfg.monitor} is not a metric bertlab logs; use one of "
                          f"{', '.join(known)} or auto")
    precision = str(cfg.trainer.get("precision"))
    if precision not in PRECISIONS:
        raise ConfigError(f"trainer.precision={precision} is not valid; use one of {', '.join(PRECISIONS)}")
    check_choices(cfg)
    check_model(cfg)
    check_read_kwargs(cfg.data.get("read_kwargs"), "data.read_kwargs")
    check_data(cfg.data)
    check_given_keys_apply(cfg)


def check_choices(cfg: DictConfig) -> None:
    """Words that name a choice, and settings that need another, before any loading."""
    data = cfg.data
    for key, valid in (("long_text", LONG_TEXT), ("window_pool", POOLS), ("task", (*TASKS, None))):
        if key in data and data[key] not in valid:
            raise ConfigError(f"data.{key}={data[key]!r} is not valid; use "
                              f"{' or '.join(str(v) for v in valid if v is not None)}"
                              + (" (or null: guessed from the labels)" if None in valid else ""))
    peft = OmegaConf.select(cfg, "model.peft")
    if peft is not None and peft not in PEFT_METHODS:
        raise ConfigError(f"model.peft={peft!r} is not valid; use {' or '.join(PEFT_METHODS)} "
                          f"(or null: train all weights)")
    if cfg.get("cv") and data.get("validation_file"):
        raise ConfigError("cv makes its validation folds out of data.train_file; drop "
                          "data.validation_file (or train without cv)")
    if data.get("unlabeled_file") and not OmegaConf.select(cfg, "distill.teacher"):
        raise ConfigError("data.unlabeled_file is learnt from a teacher's predictions; set "
                          "distill.teacher=<a trained run> too, or drop data.unlabeled_file")
    t = cfg.get("tune_lr") or {}
    if number(t.get("min_lr")) and number(t.get("max_lr")) and t["min_lr"] >= t["max_lr"]:
        raise ConfigError(f"tune_lr.min_lr={t['min_lr']} is not below tune_lr.max_lr={t['max_lr']}; "
                          f"the search sweeps from min_lr up to max_lr")
    accelerator = str(cfg.trainer.get("accelerator", "auto"))
    if accelerator in ("gpu", "cuda"):
        from bertlab.hardware import check_cuda  # (torch: only when a GPU is asked for)

        check_cuda(accelerator, "trainer.accelerator",
                   "trainer=default (a GPU when there is one, else the CPU) or trainer=cpu")


def check_given_keys_apply(cfg: DictConfig) -> None:
    """A key typed on the command line that this config would ignore is one line, not silence."""
    from bertlab.hydra_state import given_keys

    lora = [k for k in given_keys() if k.startswith("model.lora.")]
    if lora and not OmegaConf.select(cfg, "model.peft"):
        raise ConfigError(f"{lora[0]}={OmegaConf.select(cfg, lora[0])} applies to LoRA adapters, "
                          f"and model.peft is null; add model.peft=lora (or leave {lora[0]} out)")


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


