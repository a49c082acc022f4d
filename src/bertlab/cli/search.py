"""Optuna search for Hydra sweeps: the study, the search space, and the pruning callback.

The sweeper itself is in hydra_plugins/bertlab_optuna_sweeper (Hydra finds plugins there).

Hydra's own Optuna sweeper pins optuna<3, so this one is ours. What it adds: the study lives in
an SQLite file in the sweep folder, so the same command continues a search where it stopped, or
in a shared storage (a JournalStorage file, a database) that several workers serve at once; and
each job reports its validation curve (callbacks/optuna_pruning.py), so a median pruner stops
hopeless trials early.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore

from bertlab.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass
class OptunaSweeperConf:
    _target_: str = "hydra_plugins.bertlab_optuna_sweeper.OptunaSweeper"
    n_trials: int = 20
    direction: str = "minimize"
    study_name: str = "search"
    seed: int = 0
    n_jobs: int = 1  # trials launched together (a parallel launcher runs them at once)
    storage: Any = None  # null: optuna.db in the sweep folder; or a journal file / SQLAlchemy URL
    params: dict = field(default_factory=dict)
    pruner: dict = field(default_factory=lambda: {"n_startup_trials": 3, "n_warmup_steps": 0})


def register() -> None:
    ConfigStore.instance().store(group="hydra/sweeper", name="bertlab_optuna",
                                 node=OptunaSweeperConf, provider="bertlab")


def open_storage(url: str | None, sweep_dir: str | Path):
    """The study's storage: by default an SQLite file in the sweep folder (one machine; the same
    command continues the search). `url` shares one study between workers: a file path (or
    `journal:<path>`) is an Optuna JournalStorage file, for a filesystem the workers share; an
    SQLAlchemy URL (`postgresql://user:pw@host/db`, `mysql://...`, `sqlite:///...`) a database."""
    import optuna

    if not url:
        return optuna.storages.RDBStorage(f"sqlite:///{Path(sweep_dir).resolve() / 'optuna.db'}")
    try:
        if "://" in url:
            return optuna.storages.RDBStorage(url)
        path = Path(url.removeprefix("journal:")).expanduser()
        if not path.parent.is_dir():
            raise FileNotFoundError(f"the folder {path.parent} does not exist")
        return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
    except Exception as e:  # drivers, network and files fail in many ways; all are the user's URL
        from bertlab.errors import first_line

        raise ConfigError(f"hparams_search.storage={url} cannot be opened ({first_line(e)}); use a "
                          f"journal file on a shared filesystem (/shared/study.log) or an SQLAlchemy "
                          f"URL (postgresql://user:password@host/db)") from e


def load_study(sweep_dir, study_name: str, direction: str = "minimize", pruner: dict | None = None,
               storage: str | None = None, space: dict | None = None):
    """The sweeper's study: created, or loaded to continue; one of another direction or search
    space (`space`: each searched key's spec as text) is refused."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    opened, median = open_storage(storage, sweep_dir), optuna.pruners.MedianPruner(**(pruner or {}))
    try:  # (loaded first: a refused search must not add a line to a shared journal)
        study = optuna.load_study(study_name=study_name, storage=opened, pruner=median)
    except KeyError:  # a new study; or another worker's, created at this moment
        study = optuna.create_study(storage=opened, study_name=study_name, direction=direction,
                                    load_if_exists=True, pruner=median)
    where = f"study {study_name!r} in {storage or sweep_dir}"
    if study.direction.name.lower() != direction:
        raise ConfigError(f"the {where} is to {study.direction.name.lower()}, not {direction}; use "
                          f"another hydra.sweeper.study_name for a new search")
    if space is not None:
        before = study.user_attrs.get("search_space")
        if before is None:
            study.set_user_attr("search_space", space)
        elif before != space:
            changed = sorted(k for k in set(before) | set(space) if before.get(k) != space.get(k))
            raise ConfigError(f"the {where} searches another space ({changed[0]}: "
                              f"{before.get(changed[0])} there, {space.get(changed[0])} here); use "
                              f"another hydra.sweeper.study_name for a new search")
    return study  # (the sweeper seeds the sampler for each trial)


def attach(sweep_dir, study_name: str, pruner: dict | None, storage: str | None):
    """A trial's job: the study its sweeper made (to report the curve and be pruned)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.load_study(study_name=study_name, storage=open_storage(storage, sweep_dir),
                             pruner=optuna.pruners.MedianPruner(**(pruner or {})))


# ---- several workers on one study: who runs a trial, and whether it is still alive -------------
# Optuna's heartbeat is for RDB storages only (not JournalStorage), and its ask/tell API leaves
# beating to the caller, so each sweeper marks its trials and beats for them while they run.
BEAT_EVERY, STALE_AFTER = 30, 300  # seconds


def worker() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def claim(study, trial) -> None:
    """Mark `trial` this worker's: its first heartbeat, then its worker's name (two writes: another
    worker that reads between them sees a trial with no name, which is young, not stale)."""
    study._storage.set_trial_system_attr(trial._trial_id, "heartbeat", time.time())
    study._storage.set_trial_system_attr(trial._trial_id, "worker", worker())


@contextlib.contextmanager
def beating(study, trials):
    """While it lasts, a thread records a heartbeat for `trials` every BEAT_EVERY seconds."""
    stop = threading.Event()

    def beat():
        while not stop.wait(BEAT_EVERY):
            for t in trials:
                try:
                    study._storage.set_trial_system_attr(t._trial_id, "heartbeat", time.time())
                except Exception:  # noqa: BLE001 - finished meanwhile (pruned by its job)
                    pass

    thread = threading.Thread(target=beat, daemon=True, name="optuna-heartbeat")
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def stale(trial, now: float) -> bool:
    """A running trial whose worker is gone: a process of this machine that no longer runs, or
    no heartbeat for STALE_AFTER seconds (a trial of an older bertlab: none after a minute)."""
    who, beat = trial.system_attrs.get("worker"), trial.system_attrs.get("heartbeat")
    if who is None:
        return now - trial.datetime_start.timestamp() > 60
    host, pid = who.rsplit(":", 1)
    if host == socket.gethostname():
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            pass
    return now - (beat or trial.datetime_start.timestamp()) > STALE_AFTER


def give_up_stale(study) -> int:
    """Running trials whose worker is gone, told failed (they count as done); how many."""
    import optuna

    now, n = time.time(), 0
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        if stale(t, now):
            study.tell(t.number, state=optuna.trial.TrialState.FAIL)
            n += 1
    return n


def parse_space(name: str, spec) -> Any:
    """A search-space entry in Hydra's sweep syntax, as Hydra's Optuna sweeper reads it:
    `choice(16, 32)`, `range(1, 4)`, `interval(0.0, 0.1)`, `tag(log, interval(1e-5, 3e-4))`."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    if not isinstance(spec, str):
        return spec  # parsed already (a sweep override from the command line)
    return OverridesParser.create().parse_override(f"{name.lstrip('+')}={spec}").value()


def suggest(trial, name: str, space) -> Any:
    from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep

    key = name.lstrip("+")
    if isinstance(space, ChoiceSweep):
        return trial.suggest_categorical(key, list(space.list))
    if isinstance(space, RangeSweep):
        return trial.suggest_int(key, int(space.start), int(space.stop) - 1, step=int(space.step))
    if isinstance(space, IntervalSweep):
        log = "log" in (space.tags or set())
        if isinstance(space.start, int) and isinstance(space.end, int):
            return trial.suggest_int(key, space.start, space.end, log=log)
        return trial.suggest_float(key, float(space.start), float(space.end), log=log)
    raise ConfigError(f"the search space of {name} ({space!r}) is not one; use choice(...), "
                      f"range(...), interval(a, b) or tag(log, interval(a, b))")


def write_best(study, sweep_dir: Path) -> dict:
    import optuna

    states = [t.state for t in study.trials]
    count = lambda s: sum(x == s for x in states)  # noqa: E731
    out = {"trials": len(states), "complete": count(optuna.trial.TrialState.COMPLETE),
           "pruned": count(optuna.trial.TrialState.PRUNED),
           "failed": count(optuna.trial.TrialState.FAIL)}
    if out["complete"]:
        out.update(best_value=study.best_value, best_params=study.best_params,
                   best_trial=study.best_trial.number)
    (sweep_dir / "best.json").write_text(json.dumps(out, indent=1))
    return out
