"""Losses from the `loss` config group; `auto` picks the usual one for the task."""
from __future__ import annotations

from hydra.utils import instantiate
from torch import nn

from bertlab.errors import ConfigError

# task -> loss classes that fit it (the first is what `loss=auto` uses)
FITS: dict[str, tuple[type[nn.Module], ...]] = {
    "classification": (nn.CrossEntropyLoss,),
    "multilabel": (nn.BCEWithLogitsLoss,),
    "regression": (nn.MSELoss, nn.HuberLoss, nn.L1Loss),
}


def auto(task: str) -> nn.Module:
    """Cross-entropy for classes, BCE with logits for multi-label, MSE for regression."""
    return FITS[task][0]()


def build_loss(cfg: dict, task: str) -> nn.Module:
    loss = instantiate(cfg, task=task) if cfg["_target_"].endswith(".auto") else instantiate(cfg)
    if not isinstance(loss, FITS[task]):
        valid = ", ".join(c.__name__ for c in FITS[task])
        raise ConfigError(f"loss {type(loss).__name__} does not fit a {task} task; use loss=auto "
                          f"or one of: {valid}")
    return loss
