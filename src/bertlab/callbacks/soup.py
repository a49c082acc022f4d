"""callbacks=soup: the run's best checkpoints averaged into one ("model soups", Wortsman et al.
2022; AutoGluon's MultiModalPredictor does it by default). Lightning's ModelCheckpoint keeps the
top `save_top_k` weights by `monitor`; after training, `average` starts from the best and adds
the next one to the average only if the averaged weights score at least as well on the
validation split (greedy), or averages them all (uniform), and best.ckpt holds the result.
Hand-written: Lightning's WeightAveraging/SWA average along the trajectory, not the best few."""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from bertlab.cli.choices import SOUP_METHODS
from bertlab.models.scoring import no_worse, validation_score

log = logging.getLogger(__name__)


class CheckpointSoup(ModelCheckpoint):
    """(callbacks.soup's method and save_top_k are checked before torch: training/checks.py)"""

    def __init__(self, method: str = "greedy", **kwargs):
        assert method in SOUP_METHODS and kwargs.get("save_top_k", 0) >= 2, (method, kwargs)
        super().__init__(**kwargs)
        self.method = method

    def average(self, trainer, model, dm, best: str) -> dict:
        """Average the kept checkpoints into `best` (the best one kept as best-single.ckpt);
        returns metrics.json's record: each checkpoint's validation score, which went in, and
        the average's."""
        ranked = sorted(((float(s), p) for p, s in self.best_k_models.items()),
                        key=lambda sp: sp[0], reverse=self.mode == "max")
        weights = {p: torch.load(p, map_location="cpu", weights_only=True)["state_dict"]
                   for _, p in ranked}
        score = lambda states: self.validate(trainer, model, dm, mean(states))  # noqa: E731
        soup, current = [ranked[0][1]], ranked[0][0]
        if self.method == "uniform":
            soup, current = [p for _, p in ranked], score([weights[p] for _, p in ranked])
        else:
            for _, path in ranked[1:]:
                trial = score([weights[p] for p in [*soup, path]])
                if no_worse(trial, current, self.mode):
                    soup, current = [*soup, path], trial
        record = {"method": self.method, "monitor": self.monitor, "val_of_average": current,
                  "checkpoints": [{"file": Path(p).name, "val": s, "in": p in soup} for s, p in ranked]}
        if len(soup) > 1 and trainer.is_global_zero:
            single = Path(best).with_name("best-single.ckpt")
            shutil.copyfile(best, single)
            checkpoint = torch.load(best, map_location="cpu", weights_only=True)
            checkpoint["state_dict"] = mean([weights[p] for p in soup])
            trainer.strategy.checkpoint_io.save_checkpoint(checkpoint, best)
        trainer.strategy.barrier()
        model.load_state_dict(weights[ranked[0][1]] if len(soup) == 1 else mean([weights[p] for p in soup]))
        log.info("soup (%s): %d of %d checkpoints averaged; %s %.4f (the best one alone: %.4f)",
                 self.method, len(soup), len(ranked), self.monitor, current, ranked[0][0])
        return record

    def validate(self, trainer, model, dm, state: dict) -> float:
        model.load_state_dict(state)
        return validation_score(trainer, model, dm, self.monitor)


def mean(states: list[dict]) -> dict:
    """The element-wise mean of state dicts (integer buffers: the first's)."""
    out = {}
    for key, first in states[0].items():
        if torch.is_floating_point(first):
            out[key] = sum(s[key].double() for s in states).div(len(states)).to(first.dtype)
        else:
            out[key] = first
    return out
