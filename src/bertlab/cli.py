"""What the entry points share: fast checks of the command line, and one-line user errors."""
from __future__ import annotations

import importlib
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Callable

from hydra.experimental.callback import Callback
from omegaconf.errors import MissingMandatoryValue

from bertlab.errors import ConfigError, user_error

log = logging.getLogger("bertlab")


# Hydra's options that take a value (the next word), and --info's optional one
VALUED = {"--cfg", "-c", "--package", "-p", "--config-path", "-cp", "--config-name", "-cn",
          "--config-dir", "-cd", "--experimental-rerun"}
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
    modes = [f for f in flags if f in ("-m", "--multirun", "-r", "--run", "--cfg", "-c", "--info", "-i",
                                       "-sc", "--shell-completion")]
    if len(set(modes)) > 1:
        usage(f"{' and '.join(modes)} cannot be used together; give one of them")
    return flags + overrides


def override_args(argv: list[str]) -> list[str]:
    """The overrides of a command line: what is neither a flag nor a flag's value."""
    return [a for i, a in enumerate(argv) if not a.startswith("-") and not (i and argv[i - 1] in VALUED)]


def usage(message: str) -> None:
    """A usage mistake: one line, exit 2, before anything is written."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def keys_of(node, prefix: str = "") -> list[str]:
    from omegaconf import DictConfig

    out = []
    for k in node.keys() if isinstance(node, DictConfig) else []:
        path = f"{prefix}{k}"
        out.append(path)
        child = node._get_node(k, validate_access=False)
        if isinstance(child, DictConfig) and not child._is_missing() and not child._is_none():
            out += keys_of(child, path + ".")
    return out


def get_node(cfg, key: str):
    """The config node at `key`, unresolved (None if there is none)."""
    from omegaconf import DictConfig

    node = cfg
    for part in key.split("."):
        child = node._get_node(part, validate_access=False) if isinstance(node, DictConfig) else None
        if child is None:
            return None
        node = child
    return node


def has_key(cfg, key: str) -> bool:
    return get_node(cfg, key) is not None


def open_dict_node(node) -> bool:
    """A dict that is empty or null by default: users add their own keys to it."""
    from omegaconf import DictConfig

    if node is None or node._is_interpolation():
        return False
    return node._is_none() or isinstance(node, DictConfig) and len(node) == 0


def closest(key: str, keys: list[str]) -> str:
    import difflib

    leaf: dict[str, str] = {}
    for k in sorted(keys, key=len, reverse=True):  # a leaf name stands for its shortest key
        leaf[k.rsplit(".", 1)[-1]] = k
    found = difflib.get_close_matches(key, keys, n=3, cutoff=0.8)
    found += [leaf[m] for m in difflib.get_close_matches(key.rsplit(".", 1)[-1], list(leaf), n=3,
                                                          cutoff=0.75) if leaf[m] not in found]
    return ", ".join(found[:3])


def compose_for_check(conf_dir: Path, config_name: str, overrides: list[str]):
    """The config these overrides make; what Hydra would refuse is one line here."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    try:
        with initialize_config_dir(str(conf_dir), version_base="1.3"):
            return compose(config_name, overrides=overrides, return_hydra_config=True)
    except Exception as e:
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        cause = str(e.__cause__ or "").strip().splitlines()
        usage(" ".join(lines[:1] + ([cause[0]] if cause and cause[0] not in lines[:1] else []))
              or type(e).__name__)
    finally:
        GlobalHydra.instance().clear()


def check_overrides(argv: list[str], conf_dir: Path, config_name: str):
    """Refuse unknown keys with the closest valid ones (Hydra's struct error suggests `+key=`,
    which then trains with a key nothing reads); let a key inside an open dict (one that is
    empty by default, like model.config_overrides) be set without `+`; and spread a dict value
    over an existing dict key by key (`data.read_kwargs={encoding: latin-1}` adds to the
    defaults instead of failing). Returns the rewritten argv."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import OverrideType
    from omegaconf import DictConfig

    args = override_args(argv)
    for a in args:
        if "=" not in a and not a.startswith("~"):
            usage(f"{a!r} is not an override; use key=value or group=option (--help lists them)")
    try:
        parsed = OverridesParser.create().parse_overrides(args)
    except Exception as e:
        usage(str(e).strip().splitlines()[0])
    groups, plain = [], []
    for o in parsed:
        is_group = (conf_dir / o.key_or_group).is_dir() or o.key_or_group.startswith("hydra/")
        if o.key_or_group.startswith("hydra") or is_group:
            if is_group and not o.key_or_group.startswith("hydra") and o.is_sweep_override():
                first = next(iter(o.sweep_string_iterator()), None)
                if first is not None:
                    groups.append(f"{o.get_key_element()}={first}")
                continue
            groups.append(o.input_line)
        else:
            plain.append(o)
    cfg = compose_for_check(conf_dir, config_name, groups)
    keys = [k for k in keys_of(cfg) if not k.startswith("hydra")]
    rewritten = {}
    for o in plain:
        key = o.key_or_group
        missing = not has_key(cfg, key)
        parent = key.rsplit(".", 1)[0] if "." in key else None
        open_dict = parent and open_dict_node(get_node(cfg, parent))
        if o.type == OverrideType.CHANGE and missing:
            if open_dict:
                rewritten[o.input_line] = ["+" + o.input_line]  # an open dict: add the key
                continue
            hint = closest(key, keys)
            usage(f"{key} is not a key of this config" + (f"; did you mean {hint}?" if hint else
                  "") + f" (`python {config_name}.py --cfg job` lists them all)")
        if o.type == OverrideType.DEL and missing:
            usage(f"~{key} removes a key that is not in this config; keys near it: "
                  f"{closest(key, keys) or 'none'}")
        value = o.value() if not o.is_sweep_override() else None
        node = None if missing else get_node(cfg, key)
        if o.type == OverrideType.CHANGE and isinstance(value, dict) and \
                isinstance(node, DictConfig) and value:
            rewritten[o.input_line] = [
                f"{'' if k in node else '+'}{key}.{k}={json.dumps(v)}" for k, v in value.items()]
    if rewritten:
        argv = [x for a in argv for x in rewritten.get(a, [a])]
    return argv


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
    folder = Path(given[-1].split("=", 1)[1])
    others = [a for a in argv if a not in given and not a.startswith(("-", "hydra."))]
    if others:
        fail(f"resume= continues a run with the config it started with; drop {others[0]} "
             f"(or start a new run)")
    stamp = time.strftime("%Y-%m-%d_%H-%M-%S")
    extra = [f"resume={folder}", f"hydra.output_subdir=.hydra/resume-{stamp}"]
    if (folder / "multirun.yaml").is_file():
        record = OmegaConf.load(folder / "multirun.yaml").hydra.overrides
        task = [o for o in record.task if not o.startswith("resume=")]
        if any(o.startswith("hparams_search=") for o in task):
            fail(f"resume={folder} is an Optuna search; it continues when you run the same "
                 f"command again (its study is kept in outputs/searches/)")
        hydra_args = [o for o in record.hydra if not o.startswith(
            ("hydra.mode=", "hydra.sweep.dir=", "hydra.output_subdir=", "hydra.job.name="))]
        keep = folder / f"multirun.{stamp}.yaml"  # Hydra rewrites multirun.yaml; keep the old one
        keep.write_bytes((folder / "multirun.yaml").read_bytes())
        return ["-m", *task, *hydra_args, f"hydra.sweep.dir={folder}", *extra]
    overrides = folder / ".hydra" / "overrides.yaml"
    status = read_status(folder)
    if status in ("finished", "diverged", "pruned"):
        usage(f"resume={folder} has already finished (status {status}); start a new run instead")
    if not overrides.is_file():
        fail(f"resume={folder} is not a run or sweep folder (it has no .hydra/overrides.yaml "
             f"or multirun.yaml); give outputs/runs/<run> or outputs/multiruns/<sweep>")
    task = [o for o in OmegaConf.load(overrides) if not o.startswith("resume=")]
    return [*task, f"hydra.run.dir={folder}", *extra]


def fail(message: str) -> None:
    usage(message)


def read_status(folder: Path) -> str | None:
    try:
        return json.loads((folder / "metrics.json").read_text()).get("status")
    except (OSError, ValueError, AttributeError):
        return None


OWNED: Path | None = None  # the run folder this command created (removed if it fails a check)
OWNED_TOP: Path | None = None  # ... and the first of its parents that it created
CLAIM = ".claim"  # in a run folder: the pid of the run that owns it, created exclusively


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
    """Make `folder` this command's, atomically: refused if it holds anything, or if another
    command claims it at the same moment (an exclusive create of .claim)."""
    global OWNED, OWNED_TOP
    used = folder.is_dir() and any(folder.iterdir())
    top = folder
    while not top.parent.exists():
        top = top.parent  # the first folder this command creates
    if folder.exists() and not folder.is_dir():
        usage(f"{key}={folder} is a file; give a new folder")
    if not used:
        folder.mkdir(parents=True, exist_ok=True)
        if create_claim(folder):
            OWNED, OWNED_TOP = folder, top
            return
    what = ", ".join(sorted(p.name for p in folder.iterdir())[:4])
    usage(f"{key}={folder} is in use ({what}); a new run needs a new folder"
          + (f" (continue a stopped run with resume={folder})" if key == "hydra.run.dir" else ""))


def place_output(argv: list[str], conf_dir: Path, config_name: str) -> list[str]:
    """Decide the job's folder before Hydra writes into it: claimed for this command alone (a
    used one is refused), pinned so that Hydra uses the same one."""
    if any(a in ("--cfg", "-c", "--help", "-h", "--hydra-help", "--info", "-i",
                                "-sc", "--shell-completion") for a in argv):
        return argv
    from omegaconf import OmegaConf
    from omegaconf.errors import MissingMandatoryValue

    multirun = any(a in ("-m", "--multirun") for a in argv)
    overrides = override_args(argv)
    if multirun:  # sweep values cannot be composed; the sweep's own keys are enough here
        from hydra.core.override_parser.overrides_parser import OverridesParser

        overrides = [o.input_line for o in OverridesParser.create().parse_overrides(overrides)
                     if not o.is_sweep_override()]
    cfg = compose_for_check(conf_dir, config_name, overrides)
    run_dir = OmegaConf.select(cfg, "run_dir", default=None, throw_on_missing=False)
    if run_dir is not None and not Path(run_dir).is_dir():
        usage(f"run_dir={run_dir} " + ("is a file, not a run folder" if Path(run_dir).exists()
                                       else "does not exist") + "; give outputs/runs/<run>")
    if multirun:
        given = [a.split("=", 1)[1] for a in argv if a.startswith("hydra.sweep.dir=")]
        resumed = any(a.startswith("resume=") for a in argv)
        searching = OmegaConf.select(cfg, "hydra.sweeper.study_name", default=None)
        if given and not resumed and not searching and Path(given[-1]).is_dir() \
                and any(Path(given[-1]).iterdir()):
            usage(f"hydra.sweep.dir={given[-1]} is in use; a new sweep needs a new folder "
                  f"(run a stopped sweep's unfinished jobs with resume={given[-1]})")
        return argv
    if any(a.startswith("resume=") for a in argv):
        return argv  # continues in the run's own folder
    given = [a for a in argv if a.startswith(("hydra.run.dir=", "output_dir="))]
    key = given[-1].split("=", 1)[0] if given else "hydra.run.dir"
    try:
        folder = given[-1].split("=", 1)[1] if given else str(cfg.hydra.run.dir)
    except MissingMandatoryValue as e:
        usage(f"{e.full_key} is not set; give it on the command line ({e.full_key}=...)")
    if folder in (".", ""):
        return argv  # a command that makes no folder of its own
    claim(Path(folder), key)
    argv = [a for a in argv if a not in given]
    return [*argv, f"hydra.run.dir={folder}"]


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


def remove_unused_folder() -> None:
    """After a refused command: the folder it made goes, unless it already holds results."""
    import shutil

    if OWNED is None or not OWNED.is_dir():
        return
    results = [p for p in ("checkpoints", "tensorboard", "metrics.json", "model.ckpt")
               if (OWNED / p).exists()]
    if not results:
        shutil.rmtree(OWNED, ignore_errors=True)
        if OWNED_TOP and OWNED_TOP != OWNED and OWNED_TOP.is_dir() and \
                all(p.is_dir() for p in OWNED_TOP.rglob("*")):
            shutil.rmtree(OWNED_TOP, ignore_errors=True)  # the empty parents it made


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
        result = task(cfg)
        out = cfg.get("output_dir") if hasattr(cfg, "get") else None
        if out and not in_multirun() and read_status(Path(str(out))) == "diverged":
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
    remove_unused_folder()
    sys.exit(2 if isinstance(err, ConfigError) else 1)  # a usage mistake, or a failure running


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


def entry(script: str, config_name: str, task: str, check: str | None = None) -> None:
    """What each root script runs: check the command line, compose `config_name`, run `task`.

    `task` is "module:function", imported only once the config is known to be good (`check`,
    a light "module:function", runs first), so that `--help` and mistakes on the command line
    answer without importing torch.
    """
    import hydra

    conf = Path(script).resolve().parent / "conf"
    argv = flags_first(sys.argv[1:])
    check_group_choices(argv, conf)
    if config_name == "train":
        argv = resume_argv(argv)
    argv = check_overrides(argv, conf, config_name)
    if os.environ.get("LOCAL_RANK", "0") == "0":  # (not a DDP process of a run already placed)
        argv = place_output(argv, conf, config_name)
    if config_name == "train":
        argv = name_jobs_by_swept_keys(argv, conf)
    if not any(a.startswith("hydra.job.name=") for a in argv):
        argv.append(f"hydra.job.name={Path(script).stem}")  # train.log, not cli.log
    sys.argv[1:] = argv

    @hydra.main(version_base="1.3", config_path=str(conf), config_name=config_name)
    def main(cfg):
        def load(name):
            module, function = name.split(":")
            return getattr(importlib.import_module(module), function)

        if check and (failed := run_task(load(check), cfg)) is not None:
            return failed  # a sweep job with a bad value: recorded, the sweep goes on
        return run_task(load(task), cfg)

    main()
