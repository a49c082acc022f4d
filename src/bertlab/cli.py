"""What the entry points share: fast checks of the command line, and one-line user errors."""
from __future__ import annotations

import importlib
import json
import logging
import sys
from pathlib import Path
from typing import Callable

from hydra.experimental.callback import Callback
from omegaconf.errors import MissingMandatoryValue

from bertlab.errors import ConfigError, user_error

log = logging.getLogger("bertlab")


def check_group_choices(argv: list[str], conf_dir: Path) -> None:
    """Exit with one line when an override names a config-group option that does not exist.

    Hydra reports this too, but over a dozen lines, after its start-up; this runs first.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    args = [a for a in argv if not a.startswith("-") and "=" in a]
    try:
        overrides = OverridesParser.create().parse_overrides(args)
    except Exception:
        return  # Hydra will report the syntax error itself
    for o in overrides:
        group = o.key_or_group
        folder = conf_dir / group
        if o.is_delete() or not folder.is_dir() or o.package or group.startswith("hydra"):
            continue  # hydra/* groups also have options from plugins: Hydra checks those
        values = o.value()
        values = getattr(values, "list", None) or ([values] if isinstance(values, str) else [])
        valid = sorted(p.stem for p in folder.glob("*.yaml"))
        for v in values:
            if isinstance(v, str) and v not in valid:
                print(f"error: {group}={v} is not an option; valid: {', '.join(valid)}",
                      file=sys.stderr)
                sys.exit(2)


def in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


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
        return task(cfg)
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
    sys.exit(1)


class SweepSummary(Callback):
    """At the end of a multirun: the summary files (bertlab.report), one line per failed job,
    and a non-zero exit if any failed."""

    def on_multirun_end(self, config, **kwargs) -> None:
        from bertlab.report import summarize

        sweep = Path(config.hydra.sweep.dir)
        summarize(sweep)
        print(f"sweep summary: {sweep / 'summary.md'} (.csv, .png)", file=sys.stderr)
        failed = []
        for job in sorted(sweep.glob("*/metrics.json")):
            status = json.loads(job.read_text())
            if status.get("status") == "failed":
                failed.append(f"job {job.parent.name}: {status.get('error')}")
        total = len(list(sweep.glob("*/metrics.json")))
        if failed:
            print(f"error: {len(failed)} of {total} jobs failed ({sweep}):", file=sys.stderr)
            for line in failed:
                print(f"  {line}", file=sys.stderr)
            sys.exit(1)


def entry(script: str, config_name: str, task: str) -> None:
    """What each root script runs: check the command line, compose `config_name`, run `task`.

    `task` is "module:function", imported only once the config is known to be good, so that
    `--help` and mistakes on the command line answer without importing torch.
    """
    import hydra

    conf = Path(script).resolve().parent / "conf"
    check_group_choices(sys.argv[1:], conf)
    if not any(a.startswith("hydra.job.name=") for a in sys.argv):
        sys.argv.append(f"hydra.job.name={Path(script).stem}")  # train.log, not cli.log

    @hydra.main(version_base="1.3", config_path=str(conf), config_name=config_name)
    def main(cfg):
        module, function = task.split(":")
        return run_task(getattr(importlib.import_module(module), function), cfg)

    main()
