"""What every root script runs (`entry`): the command line put in order and checked, the config
composed by Hydra, the task run, and a user error turned into one line and an exit code."""
from __future__ import annotations

import atexit
import gc
import importlib
import json
import logging
import sys
import time
from pathlib import Path
from typing import Callable

from omegaconf.errors import MissingMandatoryValue

from bertlab.cli import runs
from bertlab.errors import ConfigError, exit_usage, user_error
from bertlab.cli.runs import first_process
from bertlab.cli.hydra_state import in_multirun
from bertlab.cli.output_dirs import name_jobs_by_swept_keys, place_output
from bertlab.cli.overrides import VALUED, check_group_choices, check_overrides, override_value, quoted

log = logging.getLogger("bertlab")


# Hydra's command-line flags (what its argparse takes; anything else is refused before a folder
# is claimed)
HYDRA_FLAGS = {"-h", "--help", "--hydra-help", "--version", "-c", "--cfg", "--resolve", "-p",
               "--package", "-r", "--run", "-m", "--multirun", "-sc", "--shell-completion", "-cp",
               "--config-path", "-cn", "--config-name", "-cd", "--config-dir",
               "--experimental-rerun", "-i", "--info"}
# --info's optional value
INFO = {"all", "config", "defaults", "defaults-tree", "plugins", "searchpath"}


def flags_first(argv: list[str]) -> list[str]:
    """Hydra's flags before the overrides: `train.py lr=1e-5,3e-5 -m` works like `-m lr=...`
    (argparse refuses overrides on both sides of a flag)."""
    flags, overrides, i = [], [], 0
    while i < len(argv):
        a = argv[i]
        if a.startswith("-") and "=" not in a or a.startswith("--") and a.split("=")[0] in VALUED:
            flags.append(a)
            takes = a in VALUED or (a in ("--info", "-i") and i + 1 < len(argv)
                                    and argv[i + 1] in INFO)
            if takes and i + 1 < len(argv):
                flags.append(argv[i + 1])
                i += 1
        else:
            overrides.append(a)
        i += 1
    for f in flags:
        name = f.split("=")[0]
        if name.startswith("-") and name not in HYDRA_FLAGS:
            exit_usage(f"{f} is not an option; the options are {', '.join(sorted(HYDRA_FLAGS))} "
                       f"(--help says what each does); settings are key=value")
    modes = [f for f in flags if f in ("-m", "--multirun", "-r", "--run", "--cfg", "-c", "--info", "-i",
                                       "-sc", "--shell-completion")]
    if len(set(modes)) > 1:
        exit_usage(f"{' and '.join(modes)} cannot be used together; give one of them")
    return flags + overrides


def check_single_run(argv: list[str], script: str) -> None:
    """Only train.py sweeps: another command's -m wrote Hydra's multirun/ into the working
    directory, outside any run."""
    if any(a in ("-m", "--multirun") for a in argv):
        exit_usage(f"{script}.py runs once (-m sweeps are for train.py); for several runs, call it "
                   f"once for each (a shell loop)")


def resume_argv(argv: list[str]) -> list[str]:
    """`resume=<folder>`: the command line that made the folder, run again in that folder.

    A run folder gets its own overrides back (`.hydra/overrides.yaml`), so the resumed run has
    the config it started with; a sweep folder gets its sweep again, in the same folder, where
    each job skips itself if it finished. Hydra's records of the resumed part go to
    `.hydra/resume-<time>/`, beside those of the first part.
    """
    from omegaconf import OmegaConf

    given = [a for a in argv if a.startswith("resume=")]
    if not given or any(a.startswith("hydra.job.name=train_ddp_process_") for a in argv):
        return argv  # (Lightning's DDP launcher starts the other processes with the resolved argv)
    folder = Path(override_value(given[-1]))  # (quoted, as a sweep job's folder must be)
    others = [a for a in argv if a not in given and not a.startswith(("-", "hydra."))]
    if others:
        exit_usage(f"resume= continues a run with the config it started with; drop {others[0]} "
             f"(or start a new run)")
    stamp = time.strftime("%Y-%m-%d_%H-%M-%S")
    extra = [f"resume={quoted(folder)}", f"hydra.output_subdir=.hydra/resume-{stamp}"]
    if (folder / "multirun.yaml").is_file():
        record = OmegaConf.load(folder / "multirun.yaml").hydra.overrides
        task = [o for o in record.task if not o.startswith("resume=")]
        if any(o.startswith("hparams_search=") for o in task):
            exit_usage(f"resume={folder} is an Optuna search; it continues when you run the same "
                 f"command again (its study is kept in outputs/searches/)")
        hydra_args = [o for o in record.hydra if not o.startswith(
            ("hydra.mode=", "hydra.sweep.dir=", "hydra.output_subdir=", "hydra.job.name="))]
        keep = folder / f"multirun.{stamp}.yaml"  # Hydra rewrites multirun.yaml; keep the old one
        keep.write_bytes((folder / "multirun.yaml").read_bytes())
        return ["-m", *task, *hydra_args, f"hydra.sweep.dir={quoted(folder)}", *extra]
    overrides = folder / ".hydra" / "overrides.yaml"
    status = runs.read_status(folder)
    if status in runs.FINISHED:
        exit_usage(f"resume={folder} has already finished (status {status}); start a new run instead")
    if not overrides.is_file():
        exit_usage(f"resume={folder} is not a run or sweep folder (it has no .hydra/overrides.yaml "
             f"or multirun.yaml); give outputs/runs/<run> or outputs/multiruns/<sweep>")
    task = [o for o in OmegaConf.load(overrides) if not o.startswith("resume=")]
    return [*task, f"hydra.run.dir={quoted(folder)}", *extra]


def record_failure(cfg, message: str) -> None:
    """A failed sweep job leaves metrics.json with status `failed`, for the summary below."""
    out = cfg.get("output_dir") if hasattr(cfg, "get") else None
    if out and Path(out).is_dir() and not (Path(out) / "metrics.json").exists():
        (Path(out) / "metrics.json").write_text(json.dumps({"status": "failed", "error": message},
                                                           indent=1))


def run_task(task: Callable, cfg) -> object:
    """Run `task(cfg)`; a user error becomes one line `error: ...` and a non-zero exit.

    In a multirun, a failing job (a user error or a crash) is recorded and the sweep goes on;
    SweepSummary reports the failures at the end.
    """
    try:
        result = task(cfg)
        out = cfg.get("output_dir") if hasattr(cfg, "get") else None
        if out and not in_multirun() and runs.read_status(Path(str(out))) == "diverged":
            print(f"error: training diverged (see {cfg.output_dir}/metrics.json); lower lr or "
                  f"keep gradient clipping on", file=sys.stderr)
            sys.exit(3)  # not a success: scripts and CI must not take it for one
        return result
    except KeyboardInterrupt:  # Ctrl-C before training started (during training it is handled)
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except MissingMandatoryValue as e:
        err = ConfigError(f"{e.full_key} is not set; give it on the command line "
                          f"({e.full_key}=...)")
    except Exception as e:
        err = user_error(e)
        if err is None:
            if not in_multirun():
                raise  # a bug: keep the traceback
            log.exception("job crashed")
            record_failure(cfg, f"{type(e).__name__}: {e}")
            return float("nan")
    log.debug("user error", exc_info=True)
    print(f"error: {err}", file=sys.stderr)
    if in_multirun():
        record_failure(cfg, str(err))
        return float("nan")
    runs.remove_unused_folder()
    sys.exit(2 if isinstance(err, ConfigError) else 1)  # a usage mistake, or a failure running


def reuse_mode(cfg) -> None:
    """Hydra composes the whole config twice before a run: once (`Hydra.get_mode`) only to read
    `hydra.mode`, which our check's composition of the same overrides already holds (~0.3 s of
    every command's start-up). Hand it over; an unknown Hydra keeps its own way."""
    from hydra._internal.hydra import Hydra
    from omegaconf import OmegaConf

    if callable(getattr(Hydra, "get_mode", None)):
        mode = OmegaConf.select(cfg, "hydra.mode", default=None)
        Hydra.get_mode = lambda self, config_name=None, overrides=(), **kw: mode


def entry(script: str, config_name: str, task: str, check: str | None = None) -> None:
    """What each root script runs: check the command line, compose `config_name`, run `task`.

    `task` is "module:function", imported only once the config is known to be good (`check`,
    a light "module:function", runs first), so that `--help` and mistakes on the command line
    answer without importing torch.
    """
    import hydra

    conf = Path(script).resolve().parent / "conf"
    argv = flags_first(sys.argv[1:])
    if config_name != "train":
        check_single_run(argv, Path(script).stem)
    check_group_choices(argv, conf)
    if config_name == "train":
        argv = resume_argv(argv)
    argv, cfg = check_overrides(argv, conf, config_name)  # (the one composition before Hydra's)
    if first_process():  # (not a DDP process of a run that the first one placed)
        runs.mark_command_start()
        argv = place_output(argv, cfg)
    elif not any(a.startswith("hydra.output_subdir=") for a in argv):
        argv.append("hydra.output_subdir=null")  # the first process's records stand (as Lightning does)
    if config_name == "train":
        argv = name_jobs_by_swept_keys(argv, conf)
    if not any(a.startswith("hydra.job.name=") for a in argv):
        argv.append(f"hydra.job.name={Path(script).stem}")  # train.log, not cli.log
    sys.argv[1:] = argv
    # at exit, no last walk of the cyclic collector over torch's and transformers' millions of
    # objects: 1.2 of a 16 s run's seconds (measured; files are closed before, by their owners)
    atexit.register(gc.freeze)
    reuse_mode(cfg)

    @hydra.main(version_base="1.3", config_path=str(conf), config_name=config_name)
    def main(cfg):
        def load(name):
            module, function = name.split(":")
            return getattr(importlib.import_module(module), function)

        if check and (failed := run_task(load(check), cfg)) is not None:
            return failed  # a sweep job with a bad value: recorded, the sweep goes on
        return run_task(load(task), cfg)

    main()
