"""best.ckpt when the budget keeps the last weights (a validation split too small to choose by)."""
from __future__ import annotations

from lightning.pytorch.callbacks import ModelCheckpoint


class KeepLatest(ModelCheckpoint):
    """Lightning's ModelCheckpoint with no monitor (it keeps the latest save), under a state key
    that names its file: two monitor-less ModelCheckpoints of one mode (this one and last.ckpt's,
    with a min-mode monitor such as val/loss) would otherwise share a key, which Lightning refuses."""

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
