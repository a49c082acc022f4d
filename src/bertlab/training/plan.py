"""The run's plan: what a run decides from its data and machine before it trains (the metric it
monitors and which way it improves, the precision, how long it trains, a distilled student's
shape, the lr range test's suggestion, few labels' batch and rate), decided once, logged, and
recorded in metrics.json.

The config the user composed is never written to: the run trains with `Plan.applied(cfg)`, a
read-only copy holding the decisions (what `.hydra/config.yaml` records, resolved)."""
from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from types import MappingProxyType

from omegaconf import DictConfig, OmegaConf, open_dict

from bertlab.cli import hydra_state
from bertlab.cli.checks import resolve_monitor
from bertlab.cli.hydra_state import given_keys
from bertlab.cli.resolvers import recommended_lr
from bertlab.training.trainer import decide

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Plan:
    monitor: str                      # the metric that picks the best checkpoint (monitor=auto: the task's)
    mode: str                         # min or max: which way it improves
    precision: str                    # the Trainer's (trainer.precision=auto: the hardware's fast one)
    length: MappingProxyType          # the Trainer's max_epochs, max_steps, val_check_interval (the budget)
    lr: float | None = None           # the range test's (tune_lr.apply), or budget.small_data's
    model: MappingProxyType | None = None  # distill.layers: the student (the teacher's encoder, cut)
    batch_size: int | None = None     # budget.small_data's

    def applied(self, cfg: DictConfig) -> DictConfig:
        """A read-only copy of `cfg` with the plan's decisions in it."""
        run = copy.deepcopy(cfg)
        with open_dict(run):
            run.monitor, run.mode, run.trainer.precision = self.monitor, self.mode, self.precision
            if self.lr is not None:
                run.lr = self.lr
            if self.batch_size is not None:
                run.batch_size = self.batch_size
            if self.model is not None:
                run.model = OmegaConf.create(dict(self.model))
        OmegaConf.set_readonly(run, True)
        return run


DEFAULT_BATCH = 32  # conf/train.yaml's batch_size: a batch_size of any other value was set


def small_data(cfg: DictConfig, dm, lr: float | None) -> dict:
    """budget.small_data's batch size and lr cap, for single-label classes with at most
    `max_rows_a_class` training rows a class whose validation split was too small to carve
    (dm.val_trained rows; SetFit's few-label recipe: batch 16, a low rate), each only where the
    run leaves it open: a batch_size or lr on the command line, an experiment's, another value
    than the default, the lr range test's or a LoRA rate wins. {} elsewhere."""
    rule = cfg.budget.get("small_data") or {}
    if not dm.val_trained or not rule or not dm.task.stratified \
            or len(dm.dataset["train"]) > (rule.get("max_rows_a_class") or 0) * len(dm.labels):
        return {}
    given = set(given_keys())
    preset = hydra_state.choices().get("experiment")  # (an experiment's settings are chosen ones)
    out = {}
    if rule.get("batch_size") and "batch_size" not in given and cfg.batch_size == DEFAULT_BATCH \
            and not preset:
        out["batch_size"] = int(rule.batch_size)
    cap = rule.get("max_lr")
    if cap and lr is None and "lr" not in given and cfg.lr == recommended_lr(cfg.model) \
            and not cfg.model.get("peft") and not preset and cfg.lr > cap:
        out["lr"] = float(cap)
    return out


def make_plan(cfg: DictConfig, dm, lr: float | None = None, student: dict | None = None
              ) -> tuple[Plan, dict]:
    """The plan for the data module `dm`'s data on this machine, and metrics.json's record of
    each choice and why (budget, precision, budget.small_data)."""
    monitor, mode = resolve_monitor(cfg.monitor, cfg.mode, dm.task)
    small = small_data(cfg, dm, lr)
    if small:
        log.info("budget.small_data: %s (the %d validation rows were too few to carve; "
                 "set batch_size or lr to choose them)", ", ".join(
                     f"{k}={v:g}" for k, v in small.items()), dm.val_trained)
        dm.batch_size = small.get("batch_size", dm.batch_size)  # (the data module is built)
        cfg = copy.deepcopy(cfg)
        with open_dict(cfg):
            cfg.update(small)
    validated = "validation" in dm.dataset  # (none: too small a split to carve, its rows train)
    length, chosen = decide(cfg, len(dm.dataset["train"]), dm.documents("validation")
                            if validated else dm.val_trained, cfg.lr if lr is None else lr,
                            val_trains=not validated)
    if small:
        chosen["small_data"] = small
    plan = Plan(monitor, mode, chosen["precision"]["value"], MappingProxyType(length),
                small.get("lr", lr), None if student is None else MappingProxyType(student),
                small.get("batch_size"))
    return plan, chosen
