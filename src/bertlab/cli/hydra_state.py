"""What Hydra knows about the running job, read in this one place (every function answers
sensibly when the code runs without Hydra: tests, cross-validation folds, notebooks)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path


def current():
    """Hydra's config of this job, or None outside a Hydra run."""
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.get() if HydraConfig.initialized() else None


def in_multirun() -> bool:
    from hydra.types import RunMode

    hc = current()
    return hc is not None and hc.mode == RunMode.MULTIRUN


def choices() -> dict:
    """The config-group options of this job (model: minilm, optimizer: adamw, ...)."""
    hc = current()
    return dict(hc.runtime.choices) if hc is not None else {}


def command_line_values() -> dict:
    """key=value overrides of this run (a sweep's swept keys among them), for HPARAMS."""
    hc = current()
    out = {}
    for item in hc.overrides.task if hc is not None else []:
        key, _, value = item.lstrip("+~").partition("=")
        if "/" in value or key in ("optuna_trial", "output_dir"):
            continue  # paths and bookkeeping are no hyperparameters
        try:
            out[key] = float(value) if any(c in value for c in ".e") else int(value)
        except ValueError:
            out[key] = value
    return out


def given_keys() -> list[str]:
    """The keys this run's command line sets (`model.lora.r=16` -> model.lora.r), in order."""
    hc = current()
    return [item.lstrip("+~").partition("=")[0] for item in (hc.overrides.task if hc else [])]


def fair_threads() -> int | None:
    """Torch threads for one job when a launcher runs several at once: its share of the cores."""
    hc = current()
    if hc is None:
        return None
    launcher = hc.launcher
    if launcher.get("cpus_per_task"):  # submitit: what each job was given
        return int(launcher.cpus_per_task)
    n_jobs = launcher.get("n_jobs")  # joblib: jobs at once; -1 means one per core
    cores = os.cpu_count() or 1
    if n_jobs:
        return max(1, cores // (cores if n_jobs < 0 else n_jobs))
    return None


def copy_records(dest: Path) -> None:
    """Hydra's records of this job (config, overrides) into `dest`, where they are missing."""
    hc = current()
    if hc is None:
        return
    for path in (Path(hc.runtime.output_dir) / hc.output_subdir).glob("*.yaml"):
        if not (dest / path.name).exists():
            shutil.copy(path, dest / path.name)


def sweep() -> tuple[str, str, dict, str | None]:
    """(sweep folder, Optuna study name, pruner config, storage URL) of a search job."""
    from omegaconf import OmegaConf

    hc = current()
    return (hc.sweep.dir, hc.sweeper.study_name, OmegaConf.to_container(hc.sweeper.pruner),
            hc.sweeper.get("storage"))


def leave_untouched(run_dir: Path) -> None:
    """A resumed sweep's finished job: its log file gets no more lines (the console still does),
    and the records Hydra just wrote for the resumed part (.hydra/resume-<time>/) go."""
    import logging

    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, logging.FileHandler)]:
        if Path(handler.baseFilename).resolve().is_relative_to(Path(run_dir).resolve()):
            root.removeHandler(handler)
            handler.close()
    hc = current()
    if hc is not None and str(hc.output_subdir or "").startswith(".hydra/resume-"):
        shutil.rmtree(Path(hc.runtime.output_dir) / hc.output_subdir, ignore_errors=True)
