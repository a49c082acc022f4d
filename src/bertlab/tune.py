"""tune_lr(cfg): the learning-rate range test on the configured model and data."""
from __future__ import annotations

from omegaconf import DictConfig

from bertlab.train import train


def tune_lr(cfg: DictConfig) -> float:
    return train(cfg, tune_lr=True)
