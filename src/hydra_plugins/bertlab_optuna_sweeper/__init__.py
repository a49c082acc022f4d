"""bertlab's Optuna sweeper for Hydra (`hydra/sweeper=bertlab_optuna`), on Optuna's ask/tell API.

Hydra's own Optuna sweeper pins optuna<3, so this one is ours. The study lives in an SQLite file
in the sweep folder, so the same command continues a search where it stopped, or in a shared
storage (`hparams_search.storage`) that several sweepers (workers, on one machine or many) serve
together: each asks the study for its next trial, so none runs twice. Each job reports its
validation curve (bertlab.callbacks.optuna_pruning), so a median pruner stops hopeless trials.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from omegaconf import DictConfig, OmegaConf

from bertlab.errors import ConfigError, exit_usage
from bertlab.cli.search import (beating, claim, give_up_stale, load_study, parse_space, register,
                            suggest, write_best)

log = logging.getLogger(__name__)
register()


def folder_name(number: int, values: dict) -> str:
    """`3_lr=0.0002072,batch_size=16,...`: TensorBoard's readable run name for the trial."""
    short = {k.rsplit(".", 1)[-1]: f"{v:.4g}" if isinstance(v, float) else v
             for k, v in values.items()}
    return f"{number}_" + ",".join(f"{k}={v}" for k, v in short.items())


class OptunaSweeper(Sweeper):
    def __init__(self, n_trials: int, direction: str, study_name: str, seed: int, n_jobs: int,
                 params: dict, pruner: dict, storage: str | None = None) -> None:
        self.n_trials, self.direction, self.study_name = n_trials, direction, study_name
        # joblib's way: -1 is one per core, -2 all but one
        self.seed = seed
        self.n_jobs = max(1, n_jobs if n_jobs > 0 else (os.cpu_count() or 1) + 1 + n_jobs)
        self.storage = storage
        self.params = OmegaConf.to_container(params) if isinstance(params, DictConfig) else params
        self.pruner = OmegaConf.to_container(pruner) if isinstance(pruner, DictConfig) else pruner

    def setup(self, *, hydra_context, task_function, config: DictConfig) -> None:
        self.hydra_context, self.config = hydra_context, config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> Any:
        """The search; a mistake in its settings (direction, storage, space) is one line."""
        try:
            return self.search(arguments)
        except ConfigError as e:
            exit_usage(str(e))

    def search(self, arguments: list[str]) -> Any:
        import optuna

        if self.direction not in ("minimize", "maximize"):
            raise ConfigError(f"hydra.sweeper.direction={self.direction!r} is not valid; use "
                              f"minimize or maximize")

        sweep_dir = Path(self.config.hydra.sweep.dir)
        # sweep syntax on the command line (lr='tag(log, interval(1e-5, 1e-3))') joins the space
        from hydra.core.override_parser.overrides_parser import OverridesParser

        space = {name: parse_space(name, spec) for name, spec in self.params.items()}
        described = {name.lstrip("+"): str(spec) for name, spec in self.params.items()}
        fixed = []
        for o in OverridesParser.create().parse_overrides(arguments):
            if o.is_sweep_override():
                space[o.get_key_element()] = o.value()
                described[o.get_key_element().lstrip("+")] = o.input_line.split("=", 1)[1]
            else:
                fixed.append(o)
        searched = {k.lstrip("+") for k in space}
        fixed = [o.input_line for o in fixed if o.key_or_group.lstrip("+") not in searched]
        if not self.storage:  # the study file goes into the sweep folder
            sweep_dir.mkdir(parents=True, exist_ok=True)
        study = load_study(sweep_dir, self.study_name, self.direction, self.pruner, self.storage,
                           described)  # (a shared storage: checked before anything is written)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        gone = give_up_stale(study)  # trials of a stopped run (or a worker that died): failed
        states = [t.state for t in study.get_trials(deepcopy=False)]
        running = states.count(optuna.trial.TrialState.RUNNING)
        log.info("study %s in %s: %d trials done, %d to go%s%s", self.study_name,
                 self.storage or sweep_dir, len(states) - running,
                 max(self.n_trials - len(states), 0),
                 f", {running} running in other workers" if running else "",
                 f" ({gone} left running by a stopped worker: given up)" if gone else "")
        while (left := self.n_trials - len(study.get_trials(deepcopy=False))) > 0:  # (all workers')
            trials = [study.ask() for _ in range(min(self.n_jobs, left))]
            batch = []
            for t in trials:
                claim(study, t)
                # each trial its own seeded draws: workers asking at once never repeat each other,
                # and a continued search does not replay the first run's draws
                study.sampler = optuna.samplers.TPESampler(seed=self.seed + t.number)
                values = {name: suggest(t, name, spec) for name, spec in space.items()}
                batch.append(fixed + [f"{k}={v}" for k, v in values.items()]
                             + [f"+optuna_trial={t.number}",
                                f"hydra.sweep.subdir='{folder_name(t.number, values)}'"])
            self.validate_batch_is_legal(batch)
            with beating(study, trials):
                results = self.launcher.launch(batch, initial_job_idx=trials[0].number)
            for trial, result in zip(trials, results):
                state = study._storage.get_trial(trial._trial_id).state
                if state.is_finished():  # the job pruned itself
                    continue
                value = result.return_value if result.status.name == "COMPLETED" else None
                if value is None or value != value:  # failed, or NaN
                    study.tell(trial, state=optuna.trial.TrialState.FAIL)
                else:
                    study.tell(trial, float(value))
            give_up_stale(study)  # (another worker may have died meanwhile)
        write_best(study, sweep_dir)
        return study


