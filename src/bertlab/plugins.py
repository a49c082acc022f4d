"""Lightning plugins: checkpoints written atomically, and bf16 autocast that lets a fused
optimizer clip gradients."""
from __future__ import annotations

from pathlib import Path

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.plugins.precision import MixedPrecision, Precision

from bertlab.files import written_whole


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write a checkpoint to a temporary name, then rename it: a crash during the write leaves
    the previous checkpoint whole."""

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        with written_whole(Path(path), fsync=True) as tmp:  # on disk before it is the checkpoint
            super().save_checkpoint(checkpoint, tmp, storage_options)


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


def uses_cuda(trainer_cfg) -> bool:
    accelerator = str(trainer_cfg.get("accelerator", "auto"))
    return accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())


def hardware(cuda: bool) -> dict:
    """The facts precision=auto decides on: the GPU's compute capability, or the CPU's flags."""
    if cuda:
        return {"cuda": torch.cuda.get_device_name(), "capability": torch.cuda.get_device_capability()}
    flags: set[str] = set()
    try:
        with open("/proc/cpuinfo") as f:
            flags = {w for line in f if line.startswith("flags") for w in line.split()}
    except OSError:
        pass  # not Linux: no flags known, so fp32
    return {"cpu_flags": sorted(flags & {"avx512_bf16", "amx_bf16", "amx_tile"})}


def choose_precision(requested: str, facts: dict) -> tuple[str, str]:
    """(precision, why): `auto` is bf16-mixed where the hardware computes bf16 natively (CUDA
    compute capability 8.0 or newer; a CPU with AVX-512 BF16 or AMX), else 32-true: emulated bf16
    is slower than fp32. Any other value is kept."""
    if requested != "auto":
        return requested, "set in trainer.precision"
    if "cuda" in facts:
        major, minor = facts["capability"]
        if major >= 8:
            return "bf16-mixed", f"{facts['cuda']} (compute capability {major}.{minor}) runs bf16 natively"
        return "32-true", (f"{facts['cuda']} (compute capability {major}.{minor}) has no native bf16; "
                           f"trainer.precision=16-mixed is its fast option")
    if facts.get("cpu_flags"):
        return "bf16-mixed", f"the CPU has {' and '.join(facts['cpu_flags'])}: native bf16 matmuls"
    return "32-true", "the CPU has no AVX-512 BF16 or AMX: bf16 would be emulated, slower than fp32"


def trainer_plugins(trainer_cfg) -> tuple[list, dict]:
    """Plugins for a Trainer built from `trainer_cfg`, and the arguments they replace
    (precision=auto becomes the precision the hardware runs fast)."""
    plugins: list = [AtomicCheckpointIO()]
    cuda = uses_cuda(trainer_cfg)
    precision = str(trainer_cfg.get("precision"))
    if precision == "auto":
        precision = choose_precision(precision, hardware(cuda))[0]
    if precision == "bf16-mixed":
        plugins.append(BF16Mixed("cuda" if cuda else "cpu"))
        return plugins, {"precision": None}
    return plugins, {"precision": precision}
