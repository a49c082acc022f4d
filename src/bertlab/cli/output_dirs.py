"""Where a command's outputs go, decided before Hydra writes anything: the run folder claimed for
this command alone (a used one refused), a sweep's folder checked, and its jobs' folders named by
the swept keys only."""
from __future__ import annotations

from pathlib import Path

from bertlab.cli import runs
from bertlab.errors import ConfigError, exit_usage
from bertlab.cli.overrides import override_args, override_value, quoted


def place_output(argv: list[str], cfg) -> list[str]:
    """Decide the job's folder before Hydra writes into it: claimed for this command alone (a
    used one is refused), pinned so that Hydra uses the same one. `cfg` is what check_overrides
    composed (a sweep's swept values left out: its fixed keys decide the folder)."""
    if any(a in ("--cfg", "-c", "--help", "-h", "--hydra-help", "--info", "-i",
                                "-sc", "--shell-completion") for a in argv):
        return argv
    from omegaconf import OmegaConf
    from omegaconf.errors import MissingMandatoryValue

    multirun = any(a in ("-m", "--multirun") for a in argv)
    run_dir = OmegaConf.select(cfg, "run_dir", default=None, throw_on_missing=False)
    if run_dir is not None and not Path(run_dir).is_dir():
        exit_usage(f"run_dir={run_dir} " + ("is a file, not a run folder" if Path(run_dir).exists()
                                       else "does not exist") + "; give outputs/runs/<run>")
    if run_dir is not None and (Path(run_dir) / "metrics.json").is_file() and \
            Path(run_dir).resolve().parent.name == "eval":  # (what eval.py wrote, in a run)
        exit_usage(f"run_dir={run_dir} is an eval.py result, not a training run; give the run it "
                   f"tested: run_dir={Path(run_dir).resolve().parent.parent}")
    if multirun:
        tasks = OmegaConf.select(cfg, "hydra.launcher.tasks_per_node", default=None)
        if "Slurm" in str(OmegaConf.select(cfg, "hydra.launcher._target_", default="")) and not (
                isinstance(tasks, int) and tasks > 0):
            exit_usage(f"hydra/launcher=slurm starts one task per GPU, but tasks_per_node is {tasks} "
                       f"(trainer.devices); give trainer.devices=<GPUs per node>, a number")
        given = [override_value(a) for a in argv if a.startswith("hydra.sweep.dir=")]
        resumed = any(a.startswith("resume=") for a in argv)
        searching = OmegaConf.select(cfg, "hydra.sweeper.study_name", default=None)
        if given and not resumed and not searching and Path(given[-1]).is_dir() \
                and any(Path(given[-1]).iterdir()):
            exit_usage(f"hydra.sweep.dir={given[-1]} is in use; a new sweep needs a new folder "
                  f"(run a stopped sweep's unfinished jobs with resume={given[-1]})")
        return argv
    if any(a.startswith("resume=") for a in argv):
        return argv  # continues in the run's own folder
    given = [a for a in argv if a.startswith(("hydra.run.dir=", "output_dir="))]
    key = given[-1].split("=", 1)[0] if given else "hydra.run.dir"
    try:
        folder = override_value(given[-1]) if given else str(cfg.hydra.run.dir)
    except MissingMandatoryValue as e:
        exit_usage(f"{e.full_key} is not set; give it on the command line ({e.full_key}=...)")
    if folder in (".", ""):
        return argv  # a command that makes no folder of its own
    try:
        runs.claim(Path(folder), key)
    except ConfigError as e:
        exit_usage(str(e))
    argv = [a for a in argv if a not in given]
    return [*argv, f"hydra.run.dir={quoted(folder)}"]


def name_jobs_by_swept_keys(argv: list[str], conf_dir: Path) -> list[str]:
    """A sweep's job folders are named by the swept keys only (`3_lr=3e-05`), not by every
    override: the keys that are the same in every job go to override_dirname's exclude list."""
    if not any(a in ("-m", "--multirun") for a in argv):
        return argv
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    overrides = override_args(argv)
    parsed = OverridesParser.create().parse_overrides(overrides)
    fixed = [o.key_or_group for o in parsed if not o.is_sweep_override()
             and not o.key_or_group.startswith("hydra")]
    if not fixed:
        return argv
    base = OmegaConf.load(conf_dir / "hydra" / "default.yaml")
    keys = list(base.job.config.override_dirname.exclude_keys) + \
        [k for k in fixed if k not in base.job.config.override_dirname.exclude_keys]
    setting = "hydra.job.config.override_dirname.exclude_keys="
    return [a for a in argv if not a.startswith(setting)] + [f"{setting}[{','.join(keys)}]"]
