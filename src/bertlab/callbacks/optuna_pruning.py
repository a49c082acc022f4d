"""A trial's validation curve, reported to its Optuna study (hparams_search), which may prune it."""
from __future__ import annotations

from lightning.pytorch.callbacks import Callback

from bertlab.cli.search import attach


class OptunaPruning(Callback):
    """Reports `monitor` after each validation to the trial; stops the run when Optuna's pruner
    says the curve is hopeless (the job then ends with status `pruned`)."""

    def __init__(self, sweep_dir: str, study_name: str, trial_number: int, monitor: str,
                 pruner: dict | None = None, storage: str | None = None) -> None:
        import optuna

        self.study = attach(sweep_dir, study_name, pruner, storage)  # the sweeper's study and pruner
        self.trial_number, self.monitor, self.pruned = trial_number, monitor, False
        trial = next(t for t in self.study.trials if t.number == trial_number)
        self.trial = optuna.trial.Trial(self.study, trial._trial_id)

    def on_validation_end(self, trainer, pl_module) -> None:
        import optuna

        value = trainer.callback_metrics.get(self.monitor)
        if trainer.sanity_checking or value is None or self.pruned:
            return
        self.trial.report(float(value), step=trainer.current_epoch)
        if self.trial.should_prune():
            self.pruned = True
            trainer.should_stop = True
            self.study.tell(self.trial_number, state=optuna.trial.TrialState.PRUNED)
