"""Optional stages around training: distillation (before: the teacher's targets and the
student's shape), cross-validation (around: k runs), and the post-training stages.

A post-training stage runs after the best checkpoint is scored, on the validation split, and its
record goes beside the checkpoint (files.write_beside_checkpoint) and into metrics.json under its
name. conf/train.yaml `post_training` lists them, in order, each by its `_target_`: an object with

    name                                 its key in metrics.json
    check(cfg, dm)                       before training: refuse what cannot work on this data
    wanted(cfg, dm) -> bool              whether this run runs it
    run(model, dm, run_dir, best, cfg)   fit it on `model` (the best weights), write its record,
                                         apply it to `model`; returns the record

calibration.py (temperature scaling) and thresholds.py (multi-label decisions) are the two today.
"""
from __future__ import annotations

from typing import Protocol


class PostTraining(Protocol):
    name: str

    def check(self, cfg, dm) -> None: ...

    def wanted(self, cfg, dm) -> bool: ...

    def run(self, model, dm, run_dir, best: str | None, cfg) -> dict: ...
