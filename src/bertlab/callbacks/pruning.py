"""Magnitude pruning of the encoder's linear layers, on a schedule, with a before/after report."""
from __future__ import annotations

import logging
import math
import os

from lightning.pytorch.callbacks import ModelCheckpoint, ModelPruning
from torch import nn

from bertlab.errors import ConfigError
from bertlab.models.network import encoder_parts

log = logging.getLogger(__name__)


class EncoderPruning(ModelPruning):
    """Lightning's ModelPruning (torch.nn.utils.prune underneath), with three additions:

    - only the encoder's nn.Linear weights are pruned (not embeddings, LayerNorm or the head);
    - a schedule: equal steps at the end of epochs start_epoch..end_epoch reach `sparsity`;
    - a report (`self.report`): the monitored metric before pruning and after it, and the
      sparsity reached; checkpoints compete only once pruning is complete, so best.ckpt is a
      pruned model.
    """

    def __init__(self, sparsity: float = 0.5, start_epoch: int = 1, end_epoch: int | None = None,
                 pruning_fn: str = "l1_unstructured", monitor: str = "val/loss") -> None:
        if not 0 < sparsity < 1:
            raise ConfigError(f"pruning sparsity={sparsity} is not valid; use a fraction in (0, 1)")
        self.sparsity, self.start, self.end, self.monitor = sparsity, start_epoch, end_epoch, monitor
        super().__init__(pruning_fn=pruning_fn, amount=self.amount_at, parameter_names=["weight"],
                         use_global_unstructured=True, make_pruning_permanent=True,
                         prune_on_train_epoch_end=True, verbose=0)
        self.report: dict = {}

    def amount_at(self, epoch: int) -> float:
        steps = self.end - self.start + 1
        # each step prunes this share of what is left: (1 - a) ** steps == 1 - sparsity
        return 1 - (1 - self.sparsity) ** (1 / steps) if self.start <= epoch <= self.end else 0.0

    def setup(self, trainer, pl_module, stage: str) -> None:
        if self.end is None:
            self.end = trainer.max_epochs - 1
        if not 0 <= self.start <= self.end < trainer.max_epochs:
            raise ConfigError(f"pruning epochs {self.start}..{self.end} do not fit in max_epochs="
                              f"{trainer.max_epochs}; start_epoch >= 1 keeps a dense epoch to "
                              f"compare with")
        _, layers = encoder_parts(pl_module.net)
        self._linears = {id(m) for layer in layers for m in layer.modules()
                         if isinstance(m, nn.Linear)}
        super().setup(trainer, pl_module, stage)

    def filter_parameters_to_prune(self, parameters_to_prune=()):
        return [(m, name) for m, name in parameters_to_prune if id(m) in self._linears]

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if pl_module.current_epoch == self.start:
            self.report["before"] = {self.monitor: trainer.callback_metrics.get(self.monitor)}
        super().on_train_epoch_end(trainer, pl_module)
        if pl_module.current_epoch == self.end:  # pruning complete: rank only pruned models
            for cb in trainer.checkpoint_callbacks:
                if isinstance(cb, ModelCheckpoint) and cb.monitor and cb.best_model_path:
                    if os.path.exists(cb.best_model_path):
                        os.remove(cb.best_model_path)  # this run's own dense checkpoint
                    cb.best_k_models, cb.best_model_path, cb.best_model_score = {}, "", None
                    cb.kth_best_model_path = ""
                    cb.kth_value = cb.kth_value.new_tensor(math.inf if cb.mode == "min"
                                                           else -math.inf)

    def sparsity_reached(self) -> float:
        zeros = total = 0
        for module, name in self._parameters_to_prune:
            weight = getattr(module, name)
            zeros += int((weight == 0).sum())
            total += weight.numel()
        return zeros / max(total, 1)

    def on_train_end(self, trainer, pl_module) -> None:
        super().on_train_end(trainer, pl_module)
        before = self.report.get("before", {}).get(self.monitor)
        self.report.update(target_sparsity=self.sparsity, sparsity=round(self.sparsity_reached(), 4),
                           before={self.monitor: None if before is None else float(before)})
        if trainer.logger:
            trainer.logger.log_metrics({"pruning/sparsity": self.report["sparsity"]},
                                       step=trainer.global_step)
