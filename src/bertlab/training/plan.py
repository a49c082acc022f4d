"""The run's plan: what a run decides from its data and machine before it trains (the metric it
monitors and which way it improves, the precision, how long it trains, a distilled student's
shape, the lr range test's suggestion), decided once, logged, and recorded in metrics.json.

The config the user composed is never written to: the run trains with `Plan.applied(cfg)`, a
read-only copy holding the decisions (what `.hydra/config.yaml` records, resolved)."""
from __future__ import annotations

import copy
from dataclasses import dataclass
from types import MappingProxyType

from omegaconf import DictConfig, OmegaConf, open_dict

from bertlab.cli.checks import resolve_monitor
from bertlab.training.trainer import decide


@dataclass(frozen=True)
class Plan:
    monitor: str                      # the metric that picks the best checkpoint (monitor=auto: the task's)
    mode: str                         # min or max: which way it improves
    precision: str                    # the Trainer's (trainer.precision=auto: the hardware's fast one)
    length: MappingProxyType          # the Trainer's max_epochs, max_steps, val_check_interval (the budget)
    lr: float | None = None           # tune_lr.apply=true: the range test's suggestion
    model: MappingProxyType | None = None  # distill.layers: the student (the teacher's encoder, cut)

    def applied(self, cfg: DictConfig) -> DictConfig:
        """A read-only copy of `cfg` with the plan's decisions in it."""
        run = copy.deepcopy(cfg)
        with open_dict(run):
            run.monitor, run.mode, run.trainer.precision = self.monitor, self.mode, self.precision
            if self.lr is not None:
                run.lr = self.lr
            if self.model is not None:
                run.model = OmegaConf.create(dict(self.model))
        OmegaConf.set_readonly(run, True)
        return run


def make_plan(cfg: DictConfig, dm, lr: float | None = None, student: dict | None = None
              ) -> tuple[Plan, dict]:
    """The plan for the data module `dm`'s data on this machine, and metrics.json's record of
    each choice and why (budget, precision)."""
    monitor, mode = resolve_monitor(cfg.monitor, cfg.mode, dm.task)
    validated = "validation" in dm.dataset  # (none: too small a split to carve, its rows train)
    length, chosen = decide(cfg, len(dm.dataset["train"]), dm.documents("validation")
                            if validated else dm.val_trained, cfg.lr if lr is None else lr,
                            val_trains=not validated)
    plan = Plan(monitor, mode, chosen["precision"]["value"], MappingProxyType(length), lr,
                None if student is None else MappingProxyType(student))
    return plan, chosen
