"""What precision=auto decides on: the GPU's compute capability or the CPU's flags (torch only,
no Lightning: predict.py and serve.py ask too, and Lightning costs seconds of start-up)."""
from __future__ import annotations

import torch


def check_cuda(accelerator: str, key: str, instead: str) -> None:
    """A GPU asked for by name, on a machine where torch sees none: one line, not CUDA's traceback."""
    if str(accelerator) in ("gpu", "cuda") and not torch.cuda.is_available():
        from bertlab.errors import ConfigError

        raise ConfigError(f"{key}={accelerator} needs a CUDA GPU, and torch sees none here "
                          f"(torch {torch.__version__}, CUDA build {torch.version.cuda or 'none'}); "
                          f"use {instead}")


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
    is slower than fp32. 16-mixed off CUDA is bf16-mixed, as Lightning makes it. Any other value is
    kept."""
    if requested == "16-mixed" and "cuda" not in facts:  # Lightning's own swap, made visible
        return "bf16-mixed", "trainer.precision=16-mixed: fp16 autocast is CUDA's; bf16-mixed on the CPU"
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
