"""Optuna search for Hydra sweeps: the study, the search space, and the pruning callback.

The sweeper itself is in hydra_plugins/bertlab_optuna_sweeper (Hydra finds plugins there).

Hydra's own Optuna sweeper pins optuna<3, so this one is ours. Two things it adds: the study
lives in an SQLite file in the sweep folder, so the same command continues a search where it
stopped; and each job reports its validation curve (callbacks/optuna_pruning.py), so a median pruner
stops hopeless trials early.
"""
from __future__ import annotations

import json
import logging
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
    params: dict = field(default_factory=dict)
    pruner: dict = field(default_factory=lambda: {"n_startup_trials": 3, "n_warmup_steps": 0})


def register() -> None:
    ConfigStore.instance().store(group="hydra/sweeper", name="bertlab_optuna",
                                 node=OptunaSweeperConf, provider="bertlab")


def storage_url(sweep_dir: str | Path) -> str:
    return f"sqlite:///{Path(sweep_dir).resolve() / 'optuna.db'}"


def load_study(sweep_dir, study_name: str, direction: str = "minimize", seed: int = 0,
               pruner: dict | None = None):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        storage=storage_url(sweep_dir), study_name=study_name, direction=direction,
        load_if_exists=True, pruner=optuna.pruners.MedianPruner(**(pruner or {})))
    # seeded, but not replaying the first run's draws when a search continues
    study.sampler = optuna.samplers.TPESampler(seed=seed + len(study.trials))
    return study


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
