"""bertlab's Optuna sweeper for Hydra (`hydra/sweeper=bertlab_optuna`), on Optuna's ask/tell API.

Hydra's own Optuna sweeper pins optuna<3, so this one is ours. The study lives in an SQLite file
in the sweep folder, so the same command continues a search where it stopped; each job reports
its validation curve (bertlab.search.OptunaPruning), so a median pruner stops hopeless trials.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from omegaconf import DictConfig, OmegaConf

from bertlab.errors import ConfigError
from bertlab.search import load_study, parse_space, register, suggest, write_best

log = logging.getLogger(__name__)
register()


def folder_name(number: int, values: dict) -> str:
    """`3_lr=0.0002072,batch_size=16,...`: TensorBoard's readable run name for the trial."""
    short = {k.rsplit(".", 1)[-1]: f"{v:.4g}" if isinstance(v, float) else v
             for k, v in values.items()}
    return f"{number}_" + ",".join(f"{k}={v}" for k, v in short.items())


class OptunaSweeper(Sweeper):
    def __init__(self, n_trials: int, direction: str, study_name: str, seed: int, n_jobs: int,
                 params: dict, pruner: dict) -> None:
        if direction not in ("minimize", "maximize"):
            raise ConfigError(f"hydra.sweeper.direction={direction!r} is not valid; use "
                              f"minimize or maximize")
        self.n_trials, self.direction, self.study_name = n_trials, direction, study_name
        self.seed, self.n_jobs = seed, max(1, n_jobs)
        self.params = OmegaConf.to_container(params) if isinstance(params, DictConfig) else params
        self.pruner = OmegaConf.to_container(pruner) if isinstance(pruner, DictConfig) else pruner

    def setup(self, *, hydra_context, task_function, config: DictConfig) -> None:
        self.hydra_context, self.config = hydra_context, config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> Any:
        import optuna

        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        study = load_study(sweep_dir, self.study_name, self.direction, self.seed, self.pruner)
        done = [t for t in study.trials if t.state.is_finished()]
        for t in study.trials:  # trials of an interrupted run: never told, give them up
            if not t.state.is_finished():
                study.tell(t.number, state=optuna.trial.TrialState.FAIL)
        # sweep syntax on the command line (lr='tag(log, interval(1e-5, 1e-3))') joins the space
        from hydra.core.override_parser.overrides_parser import OverridesParser

        space = {name: parse_space(name, spec) for name, spec in self.params.items()}
        fixed = []
        for o in OverridesParser.create().parse_overrides(arguments):
            if o.is_sweep_override():
                space[o.get_key_element()] = o.value()
            else:
                fixed.append(o)
        searched = {k.lstrip("+") for k in space}
        fixed = [o.input_line for o in fixed if o.key_or_group.lstrip("+") not in searched]
        left = self.n_trials - len(done)
        log.info("study %s in %s: %d trials done, %d to go", self.study_name, sweep_dir,
                 len(done), max(left, 0))
        while left > 0:
            trials = [study.ask() for _ in range(min(self.n_jobs, left))]
            batch = []
            for t in trials:
                values = {name: suggest(t, name, spec) for name, spec in space.items()}
                batch.append(fixed + [f"{k}={v}" for k, v in values.items()]
                             + [f"+optuna_trial={t.number}",
                                f"hydra.sweep.subdir='{folder_name(t.number, values)}'"])
            self.validate_batch_is_legal(batch)
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
            left -= len(trials)
        write_best(study, sweep_dir)
        return study


