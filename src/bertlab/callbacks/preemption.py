"""Runs that survive: checkpoints/last.ckpt during the epoch, and a clean stop on SIGTERM/Ctrl-C.

Hand-written because Lightning's ModelCheckpoint cannot save both every epoch and every N
minutes in one instance, and Lightning stops on Ctrl-C wherever it is (mid-step) with no
checkpoint, ignoring a second Ctrl-C.
"""
from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import lightning as L


class Preemption(L.Callback):
    """Save `last.ckpt` every `every_n_minutes` (and/or `every_n_steps`) of training, and on
    SIGTERM or SIGINT at the end of the current step (or validation), then stop.

    A second Ctrl-C exits at once (the checkpoint on disk is still the previous, whole one).
    """

    def __init__(self, dirpath: str, every_n_minutes: float | None = 10,
                 every_n_steps: int | None = None, filename: str = "last.ckpt") -> None:
        self.path = Path(dirpath) / filename
        self.every_n_minutes, self.every_n_steps = every_n_minutes, every_n_steps
        self.requested: str | None = None  # the signal's name, once one arrives
        self.previous: dict = {}
        self.last_save = time.monotonic()

    def handle(self, signum, frame) -> None:
        name = signal.Signals(signum).name
        if self.requested and signum == signal.SIGINT:
            print(f"\n{name} again: exiting now, without a new checkpoint", file=sys.stderr)
            os._exit(130)
        self.requested = name
        print(f"\n{name}: saving a checkpoint at the end of this step, then stopping "
              f"(Ctrl-C again to exit at once)", file=sys.stderr)

    def on_fit_start(self, trainer, pl_module) -> None:
        # replaces Lightning's SIGTERM handler, which stops mid-validation with no checkpoint
        self.last_save = time.monotonic()
        for sig in (signal.SIGINT, signal.SIGTERM):
            self.previous[sig] = signal.signal(sig, self.handle)

    def on_fit_end(self, trainer, pl_module) -> None:
        self.restore()

    def on_exception(self, trainer, pl_module, exception) -> None:
        self.restore()

    def restore(self) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        self.previous = {}

    def save(self, trainer) -> None:
        trainer.save_checkpoint(self.path, weights_only=False)
        self.last_save = time.monotonic()

    def stop(self, trainer) -> None:
        """Save, then let Lightning stop once this step is logged (raising SIGTERMException)."""
        self.save(trainer)
        trainer._signal_connector.received_sigterm = True

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        due = bool(self.every_n_steps and trainer.global_step % self.every_n_steps == 0) or bool(
            self.every_n_minutes and time.monotonic() - self.last_save >= 60 * self.every_n_minutes)
        requested = self.requested
        if trainer.world_size > 1:  # rank 0 decides, so that every process saves together
            due, requested = trainer.strategy.broadcast((due, requested), src=0)
            self.requested = requested
        if requested:
            self.stop(trainer)
        elif due:
            self.save(trainer)

    def on_validation_end(self, trainer, pl_module) -> None:
        if self.requested and not trainer.sanity_checking and trainer.state.fn == "fit":
            self.stop(trainer)  # the signal came during validation: stop at the epoch's end
