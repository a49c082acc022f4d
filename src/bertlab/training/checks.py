"""train.py's checks before any work, with no torch: `train.py lr=-1`, a typo in a choice, a
missing data file or an unreachable tracker answer at once, in one line."""
from __future__ import annotations

import json
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from bertlab.cli.checks import PRECISIONS, check_ranges, check_read_kwargs, number, positive
from bertlab.cli.choices import LONG_TEXT, PEFT_METHODS, POOLS, SOUP_METHODS
from bertlab.errors import ConfigError
from bertlab.hub import check_local, check_max_length
from bertlab.task import TASKS


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
    from bertlab.data.sources import SPLITS, check_files, check_train_file

    keys = [k for k in ("text_column", "text_pair_column", "label_column") if data.get(k) is not None]
    for i, a in enumerate(keys):  # one column in two roles: the label as the text trains on the answer
        for b in keys[i + 1:]:
            if str(data[a]) == str(data[b]):
                raise ConfigError(f"data.{a} and data.{b} are both {data[a]!r}; each role needs a "
                                  f"column of its own")
    for key in ("exclude_rows", "relabel_rows"):  # label_issues.csv (data/label_fixes.py)
        if data.get(key) is not None and not Path(str(data[key])).is_file():
            raise ConfigError(f"data.{key}={data[key]} does not exist; give the label_issues.csv "
                              f"that find_label_issues.py wrote")
    check_train_file(data.get("source"), data.get("train_file"), data.get("labels"), data.get("test_file"))
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
    check_time(cfg)
    cv = cfg.get("cv")
    if cv is not None and (isinstance(cv, bool) or not isinstance(cv, int) or cv < 2):
        raise ConfigError(f"cv={cv!r} is not valid; use a number of folds >= 2 (e.g. cv=5), or "
                          f"null for no cross-validation")
    fold = cfg.get("cv_fold")
    if fold is not None and (cv is None or isinstance(fold, bool) or not isinstance(fold, int)
                             or not 0 <= fold < cv):
        raise ConfigError(f"cv_fold={fold!r} is not valid; use 0..cv-1 together with cv=K")
    check_average_runs(cfg)
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


def check_average_runs(cfg: DictConfig) -> None:
    """average_runs is a count of runs, and not combined with what plans or fits one run alone."""
    k, index = cfg.get("average_runs", 1), cfg.get("average_run")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ConfigError(f"average_runs={k!r} is not valid; use a number of runs >= 1 "
                          f"(1: one run; 2 or more: their best weights averaged)")
    if index is not None and (isinstance(index, bool) or not isinstance(index, int)
                              or not 0 <= index < k):
        raise ConfigError(f"average_run={index!r} is not valid; use 0..average_runs-1 together "
                          f"with average_runs=K")
    if k == 1:
        return
    for key, value, why in (("cv", cfg.get("cv"), "cross-validation trains its own runs"),
                            ("budget.time", cfg.budget.get("time"), "it plans one run's steps"),
                            ("calibrate", cfg.get("calibrate"), "each run calibrates on its own "
                             "validation rows, not the average's")):
        if value:
            raise ConfigError(f"average_runs={k} cannot be combined with {key}={value} ({why}); "
                              f"use average_runs=1 or drop {key}")


def check_time(cfg: DictConfig) -> None:
    """budget.time parses, and is the only time limit given."""
    from bertlab.training.budget import parse_time

    if cfg.budget.get("time") is None:
        return
    try:
        parse_time(cfg.budget.time)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if cfg.trainer.get("max_time") is not None:
        raise ConfigError(f"budget.time={cfg.budget.time} and trainer.max_time="
                          f"{cfg.trainer.max_time} are two time limits; give one (budget.time plans "
                          f"the run to its time, trainer.max_time only stops it)")


def check_choices(cfg: DictConfig) -> None:
    """Words that name a choice, and settings that need another, before any loading."""
    data = cfg.data
    for key, valid in (("long_text", LONG_TEXT), ("window_pool", POOLS), ("task", (*TASKS, None))):
        if key in data and data[key] not in valid:
            raise ConfigError(f"data.{key}={data[key]!r} is not valid; use "
                              f"{' or '.join(str(v) for v in valid if v is not None)}"
                              + (" (or null: guessed from the labels)" if None in valid else ""))
    head_init = OmegaConf.select(cfg, "model.head_init")
    if head_init not in (None, "probe", "auto"):
        raise ConfigError(f"model.head_init={head_init!r} is not valid; use auto, probe or null")
    head_refit = OmegaConf.select(cfg, "model.head_refit", default="auto")
    if head_refit not in (True, False, None, "auto"):
        raise ConfigError(f"model.head_refit={head_refit!r} is not valid; use auto, true or false")
    normalize = OmegaConf.select(cfg, "model.normalize", default="auto")
    if normalize not in (True, False, "auto"):
        raise ConfigError(f"model.normalize={normalize!r} is not valid; use auto, true or false")
    if normalize is True and OmegaConf.select(cfg, "model.pooling") == "cls":
        raise ConfigError("model.normalize=true normalizes the mean-pooled vector; "
                          "model.pooling=cls reads the [CLS] pooler: set model.pooling=mean (or auto)")
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
    rdrop = OmegaConf.select(cfg, "regularization.rdrop")
    if rdrop and OmegaConf.select(cfg, "distill.teacher"):
        raise ConfigError(f"regularization.rdrop={rdrop} regularizes training on labels, and "
                          f"distill.teacher trains on a teacher's outputs; drop one of them")
    soup = OmegaConf.select(cfg, "callbacks.soup")
    if soup is not None:
        if soup.get("method") not in SOUP_METHODS:
            raise ConfigError(f"callbacks.soup.method={soup.get('method')!r} is not valid; use "
                              f"{' or '.join(SOUP_METHODS)}")
        k = soup.get("save_top_k")
        if isinstance(k, bool) or not isinstance(k, int) or k < 2:
            raise ConfigError(f"callbacks.soup.save_top_k={k!r} is not valid; use a number of "
                              f"checkpoints >= 2 to average")
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
    from bertlab.cli.hydra_state import given_keys

    lora = [k for k in given_keys() if k.startswith("model.lora.")]
    if lora and not OmegaConf.select(cfg, "model.peft"):
        raise ConfigError(f"{lora[0]}={OmegaConf.select(cfg, lora[0])} applies to LoRA adapters, "
                          f"and model.peft is null; add model.peft=lora (or leave {lora[0]} out)")
