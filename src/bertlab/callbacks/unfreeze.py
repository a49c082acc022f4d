"""Unfreeze the frozen part of the encoder at a given epoch (gradual fine-tuning)."""
from __future__ import annotations

from lightning.pytorch.callbacks import BaseFinetuning


class UnfreezeAt(BaseFinetuning):
    """Lightning's BaseFinetuning does the unfreezing and adds the optimizer's param group; its
    BackboneFinetuning wants a single `backbone` module, so this names the model's own frozen list.
    """

    def __init__(self, epoch: int) -> None:
        super().__init__()
        self.epoch = epoch

    def freeze_before_training(self, pl_module) -> None:
        pass  # the model froze its parts when it was built (model.freeze_*)

    def finetune_function(self, pl_module, current_epoch: int, optimizer) -> None:
        if current_epoch != self.epoch or not pl_module.frozen:
            return
        first = optimizer.param_groups[0]
        self.unfreeze_and_add_param_group(pl_module.frozen, optimizer, lr=first["lr"],
                                          initial_denom_lr=1.0, train_bn=True)
        # the new group follows the same schedule as the first one from here on
        optimizer.param_groups[-1]["initial_lr"] = first.get("initial_lr", first["lr"])
        for config in pl_module.trainer.lr_scheduler_configs:
            sched = config.scheduler
            for name in ("base_lrs", "lr_lambdas", "min_lrs", "_last_lr"):
                values = getattr(sched, name, None)
                if isinstance(values, list) and values:
                    values.append(first.get("initial_lr", first["lr"]) if name == "base_lrs"
                                  else values[0])
