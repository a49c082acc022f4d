"""Lightning plugins: checkpoints written atomically, and bf16 autocast that lets a fused
optimizer clip gradients."""
from __future__ import annotations

import os
from pathlib import Path

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.plugins.precision import MixedPrecision, Precision


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write a checkpoint to a temporary name, then rename it: a crash during the write leaves
    the previous checkpoint whole."""

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        super().save_checkpoint(checkpoint, tmp, storage_options)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())  # on disk before the rename makes it the checkpoint
        os.replace(tmp, path)


class BF16Mixed(MixedPrecision):
    """Lightning's bf16-mixed, but gradient clipping works with a fused optimizer.

    Lightning refuses the pair because under fp16 a fused optimizer unscales the gradients itself,
    after clipping would have seen them scaled; bf16 has no scaler, so there is nothing to refuse.
    The fused AdamW step is ~3x cheaper than foreach on a CPU (measured), which is most of what
    bf16 gains there.
    """

    def __init__(self, device: str) -> None:
        super().__init__("bf16-mixed", device)

    def clip_gradients(self, optimizer, clip_val=0.0, gradient_clip_algorithm=None) -> None:
        kwargs = {"gradient_clip_algorithm": gradient_clip_algorithm} if gradient_clip_algorithm else {}
        Precision.clip_gradients(self, optimizer, clip_val=clip_val, **kwargs)


def trainer_plugins(trainer_cfg) -> tuple[list, dict]:
    """Plugins for a Trainer built from `trainer_cfg`, and the arguments they replace."""
    plugins: list = [AtomicCheckpointIO()]
    if str(trainer_cfg.get("precision")) == "bf16-mixed":
        accelerator = str(trainer_cfg.get("accelerator", "auto"))
        cuda = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
        plugins.append(BF16Mixed("cuda" if cuda else "cpu"))
        return plugins, {"precision": None}
    return plugins, {}
