"""Checks of a composed train config that need no torch: `train.py lr=-1` answers at once."""
from __future__ import annotations

from omegaconf import DictConfig

from bertlab.errors import ConfigError


def check_config(cfg: DictConfig) -> None:
    for key in ("lr", "batch_size", "max_epochs", "max_length"):
        value = cfg[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ConfigError(f"{key}={value!r} is not valid; use a positive number")
    for key in ("batch_size", "max_epochs", "max_length"):
        if not isinstance(cfg[key], int):
            raise ConfigError(f"{key}={cfg[key]!r} is not valid; use a positive integer")
    if cfg.mode not in ("min", "max"):
        raise ConfigError(f"mode={cfg.mode!r} is not valid; use min or max")
