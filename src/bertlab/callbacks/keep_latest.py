"""best.ckpt when the budget keeps the last weights (a validation split too small to choose by)."""
from __future__ import annotations

from lightning.pytorch.callbacks import ModelCheckpoint


class KeepLatest(ModelCheckpoint):
    """Lightning's ModelCheckpoint with no monitor (it keeps the latest save), under a state key
    that names its file: two monitor-less ModelCheckpoints of one mode (this one and last.ckpt's,
    with a min-mode monitor such as val/loss) would otherwise share a key, which Lightning refuses.

    Each save only replaces a copy in memory; the file is written once, when training ends or
    stops on an exception (a diverged loss keeps the epoch before it). Every epoch's write was
    wasted, since only the last is kept: with one-step epochs (a few rows) it was a third of the
    fit (measured: benchmarks/RESULTS.md, "Session 30")."""

    held: tuple[dict, str] | None = None  # (the checkpoint, its path) not yet written

    @classmethod
    def replacing(cls, best: ModelCheckpoint) -> KeepLatest:
        best.__class__, best.monitor = cls, None  # every other setting as configured
        return best

    @property
    def state_key(self) -> str:
        return self._generate_state_key(monitor=None, mode=self.mode, filename=self.filename,
                                         every_n_train_steps=self._every_n_train_steps,
                                         every_n_epochs=self._every_n_epochs,
                                         train_time_interval=self._train_time_interval)

    def _save_checkpoint(self, trainer, filepath: str) -> None:
        checkpoint = trainer._checkpoint_connector.dump_checkpoint(self.save_weights_only)
        checkpoint["state_dict"] = {k: v.detach().to("cpu", copy=True)
                                    for k, v in checkpoint["state_dict"].items()}
        self.held = (checkpoint, filepath)
        self._last_global_step_saved, self._last_checkpoint_saved = trainer.global_step, filepath

    def write(self, trainer, together: bool = True) -> None:
        """The held checkpoint to its file (by the first process); `together`: the processes
        wait for each other after it (not on an exception, which may have stopped only one)."""
        if self.held:
            checkpoint, filepath = self.held
            trainer.strategy.save_checkpoint(checkpoint, filepath)
            if together:
                trainer.strategy.barrier("KeepLatest.write")
            self.held = None

    def on_train_end(self, trainer, pl_module) -> None:
        super().on_train_end(trainer, pl_module)
        self.write(trainer)

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        super().on_exception(trainer, pl_module, exception)
        self.write(trainer, together=False)
