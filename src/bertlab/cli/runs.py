"""A run folder's whole life: claimed for one command (atomically), its records (config,
provenance), its resume point, its status and metrics.json, and reading it back.

The rule: a command never changes a folder it does not own. A folder is owned by an exclusive
create of `<run>/.claim`; a folder that holds anything is refused; a refused command removes
the folder it made unless that already holds results.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import time
import warnings
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from bertlab.cli import hydra_state
from bertlab.errors import ConfigError, DataError

CLAIM = ".claim"  # in a run folder: the pid of the run that owns it, created exclusively
FINISHED = ("finished", "diverged", "pruned")  # statuses a resumed sweep does not run again
RESULTS = ("checkpoints", "tensorboard", "csv", "metrics.json", "model.ckpt")  # never removed
OWNED: Path | None = None  # the run folder this command created (removed if it fails a check)
OWNED_TOP: Path | None = None  # ... and the first of its parents that it created


# ---- claim ----------------------------------------------------------------------------------
def create_claim(folder: Path) -> bool:
    """Create folder/.claim holding this pid, exclusively: False if it exists already."""
    try:
        fd = os.open(folder / CLAIM, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return False
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    return True


def claim(folder: Path, key: str) -> None:
    """Make `folder` this command's before anything is written: refused (ConfigError) if it
    holds anything, or if another command claims it at the same moment. `key` is the setting
    that named it, for the message."""
    global OWNED, OWNED_TOP
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{key}={folder} is a file; give a new folder")
    top = folder
    while not top.parent.exists():
        top = top.parent  # the first folder this command creates
    if not (folder.is_dir() and any(folder.iterdir())):
        folder.mkdir(parents=True, exist_ok=True)
        if create_claim(folder):
            OWNED, OWNED_TOP = folder, top
            return
    what = ", ".join(sorted(p.name for p in folder.iterdir())[:4])
    raise ConfigError(f"{key}={folder} is in use ({what}); a new run needs a new folder"
                      + (f" (continue a stopped run with resume={folder})"
                         if key == "hydra.run.dir" else ""))


def first_process() -> bool:
    """False in a DDP process other than the run's first: one Lightning started beside it
    (LOCAL_RANK), one on another node (NODE_RANK, torchrun's RANK), or one of SLURM's tasks
    (SLURM_PROCID, when srun starts one task per GPU). Only the first claims and records."""
    env = os.environ
    if int(env.get("SLURM_NTASKS", "1")) > 1 and env.get("SLURM_PROCID", "0") != "0":
        return False
    return all(env.get(key, "0") == "0" for key in ("LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "RANK"))


def continue_alone() -> bool:
    """After the runs of a stage that trains several (cv, average_runs, find_label_issues.py's
    folds) under DDP: False in the other processes, which are done; True in the first, which
    leaves the process group so that what it then scores alone (torchmetrics, Lightning) waits
    for no one."""
    if not first_process():
        return False
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    return True


def claim_run_dir(run_dir: Path) -> None:
    """Make the folder this run's alone: refused if it holds a run or another command claimed it
    (the entry point usually claimed it already, before Hydra wrote its records)."""
    if not first_process():
        return  # a DDP process of the run that the first one claimed
    for name in ("metrics.json", "checkpoints"):
        if (run_dir / name).exists():
            raise ConfigError(f"output_dir={run_dir} already holds a run ({name}); "
                              f"choose a new folder")
    if (run_dir / CLAIM).is_file():
        if OWNED is not None and OWNED.resolve() == run_dir.resolve():
            return  # claimed by this command before Hydra started
        raise ConfigError(f"output_dir={run_dir} already holds a run ({CLAIM}); choose a new folder")
    run_dir.mkdir(parents=True, exist_ok=True)
    if not create_claim(run_dir):
        raise ConfigError(f"output_dir={run_dir} was claimed by another run at the same moment; "
                          f"choose a new folder")


def remove_unused_folder() -> None:
    """After a refused command: the folder it made goes, unless it already holds results (its
    own, or a fold's: cv and find_label_issues.py hold runs inside)."""
    if OWNED is None or not OWNED.is_dir() or any(next(OWNED.rglob(p), None) for p in RESULTS):
        return
    shutil.rmtree(OWNED, ignore_errors=True)
    if OWNED_TOP and OWNED_TOP != OWNED and OWNED_TOP.is_dir() and \
            all(p.is_dir() for p in OWNED_TOP.rglob("*")):
        shutil.rmtree(OWNED_TOP, ignore_errors=True)  # the empty parents it made


# ---- resume ---------------------------------------------------------------------------------
def resume_point(run_dir: Path, status: str | None) -> tuple[Path | None, int]:
    """The run's checkpoints/last.ckpt (None: start over in the same folder) and its step."""
    if not run_dir.is_dir():
        return None, 0  # a sweep job that never started
    if status in FINISHED:
        raise ConfigError(f"resume={run_dir} has already finished (status {status}); "
                          f"start a new run instead")
    for stale in run_dir.glob("checkpoints/.*.tmp*"):  # a write that a crash cut short
        stale.unlink()
    last = run_dir / "checkpoints" / "last.ckpt"
    if not last.is_file():
        return None, 0
    return last, read_checkpoint(last, mmap=True).get("global_step", 0)


# ---- records --------------------------------------------------------------------------------
def provenance() -> dict:
    """Versions and the git commit (with a dirty flag), so that a result can be traced."""
    import importlib.metadata as md

    versions = {}
    for dist in ("bertlab", "torch", "transformers", "lightning", "datasets", "hydra-core"):
        try:
            versions[dist] = md.version(dist)
        except md.PackageNotFoundError:
            versions[dist] = None
    here = Path(__file__).resolve().parent
    git = lambda *a: subprocess.run(["git", *a], cwd=here, capture_output=True,  # noqa: E731
                                    text=True, timeout=10)
    try:
        commit = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
        code = ({"commit": commit.stdout.strip(), "dirty": bool(dirty.stdout.strip())}
                if commit.returncode == 0 else None)
    except (OSError, subprocess.TimeoutExpired):
        code = None  # no git, or not a checkout: the versions still say what ran
    return {"versions": versions, "git": code}


def write_records(run_dir: Path, cfg: DictConfig, resume_step: int | None) -> None:
    """A new run: its resolved config and provenance. A resumed one: what ran the resumed
    part, beside what ran the first one (`resume_step` None: a new run); by the first process."""
    if not first_process():
        return
    if resume_step is None and not (run_dir / "provenance.json").exists():
        (run_dir / ".hydra").mkdir(exist_ok=True)
        if cfg.get("resume"):  # a sweep job that never started: Hydra wrote its records aside
            hydra_state.copy_records(run_dir / ".hydra")
        OmegaConf.save(cfg, run_dir / ".hydra" / "config.yaml", resolve=True)
        (run_dir / "provenance.json").write_text(json.dumps(provenance(), indent=1))
        return
    record = json.loads((run_dir / "provenance.json").read_text())
    record.setdefault("resumed", []).append({"at": time.strftime("%Y-%m-%dT%H:%M:%S"),
                                             "from_step": resume_step or 0, **provenance()})
    (run_dir / "provenance.json").write_text(json.dumps(record, indent=1))


def write_metrics(run_dir: Path, metrics: dict) -> None:
    """metrics.json as strict JSON (a NaN or infinite value is written as null)."""
    finite = {k: None if isinstance(v, float) and not math.isfinite(v) else v
              for k, v in metrics.items()}
    (run_dir / "metrics.json").write_text(json.dumps(finite, indent=1, allow_nan=False))


# ---- reading --------------------------------------------------------------------------------
def recorded(run_dir: Path) -> dict:
    """The run's metrics.json, or {} if it has none (yet)."""
    path = Path(run_dir) / "metrics.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def read_status(folder: Path) -> str | None:
    """The status in the folder's metrics.json (None: none, or not readable)."""
    try:
        return json.loads((folder / "metrics.json").read_text()).get("status")
    except (OSError, ValueError, AttributeError):
        return None


def read_checkpoint(path: Path, mmap: bool = False) -> dict:
    """The checkpoint's contents, loaded without running pickled code (weights_only)."""
    import torch

    if Path(path).is_file() and Path(path).stat().st_size == 0:
        raise DataError(f"cannot load checkpoint {path}: the file is empty (0 bytes)")
    try:
        with warnings.catch_warnings():  # torch's notes on an int8 (shrink.py) checkpoint's storage
            warnings.filterwarnings("ignore", ".*TypedStorage is deprecated.*")
            warnings.filterwarnings("ignore", ".*quantized tensor creation functions.*")
            return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as e:  # torch.load on a file that is no checkpoint raises many types
        detail = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        raise DataError(f"cannot load checkpoint {path}: it is truncated, corrupted or not a "
                        f"bertlab checkpoint ({detail})") from e


def run_config(run_dir: str | Path) -> DictConfig:
    path = Path(run_dir) / ".hydra" / "config.yaml"
    if not path.is_file():
        raise DataError(f"run_dir={run_dir} has no .hydra/config.yaml; is it a bertlab run?")
    return OmegaConf.load(path)


def trained_on_pairs(run_dir: str | Path) -> bool | None:
    """Whether the run read text pairs (data.text_pair_column), if its folder says (None: no config)."""
    column = trained_pair_column(run_dir)
    return None if column is None else bool(column)


def trained_pair_column(run_dir: str | Path) -> str | None:
    """The run's data.text_pair_column ('' for single texts), if its folder says (None: no config)."""
    if not (Path(run_dir) / ".hydra" / "config.yaml").is_file():
        return None
    return str(run_config(run_dir).data.get("text_pair_column") or "")


def trained_text_column(run_dir: str | Path) -> str | None:
    """The run's data.text_column, if its folder says (None: no config)."""
    if not (Path(run_dir) / ".hydra" / "config.yaml").is_file():
        return None
    return str(run_config(run_dir).data.get("text_column") or "text")


STARTED = "BERTLAB_STARTED"  # the environment variable: when the command's first process started


def mark_command_start() -> None:
    """Record when this command's process started (budget.time counts from it); the processes
    Lightning's DDP launcher starts inherit it. Linux's /proc; elsewhere: now, a little late."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        with open("/proc/stat") as f:
            boot = next(int(line.split()[1]) for line in f if line.startswith("btime"))
        started = boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        started = time.time()
    os.environ[STARTED] = repr(started)
