"""The run's plan: what a run decides from its data and machine before it trains (the metric it
monitors and which way it improves, the precision, how long it trains, a distilled student's
shape, the lr range test's suggestion, the batch and rate of few labels and of one-pass
corpora), decided once, logged, and recorded in metrics.json.

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
from bertlab.training.budget import given_length
from bertlab.training.trainer import decide, training_length

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Plan:
    monitor: str                      # the metric that picks the best checkpoint (monitor=auto: the task's)
    mode: str                         # min or max: which way it improves
    precision: str                    # the Trainer's (trainer.precision=auto: the hardware's fast one)
    length: MappingProxyType          # the Trainer's max_epochs, max_steps, val_check_interval (the budget)
    lr: float | None = None           # the range test's (tune_lr.apply), or budget.small_data's or one_pass's
    model: MappingProxyType | None = None  # distill.layers: the student (the teacher's encoder, cut)
    batch_size: int | None = None     # budget.small_data's or budget.one_pass's

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


def open_batch_and_lr(rule, cfg: DictConfig, lr: float | None, given: set) -> dict:
    """A rule's batch_size and max_lr, each only where the run leaves it open: not on the
    command line, not another value than the default, not the lr range test's or a LoRA rate."""
    out = {}
    if rule.get("batch_size") and "batch_size" not in given and cfg.batch_size == DEFAULT_BATCH:
        out["batch_size"] = int(rule.batch_size)
    cap = rule.get("max_lr")
    if cap and lr is None and "lr" not in given and cfg.lr == recommended_lr(cfg.model) \
            and not cfg.model.get("peft") and cfg.lr > cap:
        out["lr"] = float(cap)
    return out


def small_data(cfg: DictConfig, dm, lr: float | None) -> dict:
    """budget.small_data's batch size and lr cap, for single-label classes with at most
    `max_rows_a_class` training rows a class whose validation split was too small to carve
    (dm.val_trained rows; SetFit's few-label recipe: batch 16, a low rate), each only where the
    run leaves it open (open_batch_and_lr; an experiment's settings are chosen ones). {} elsewhere."""
    rule = cfg.budget.get("small_data") or {}
    if not dm.val_trained or not rule or not dm.task.stratified \
            or len(dm.dataset["train"]) > (rule.get("max_rows_a_class") or 0) * len(dm.labels):
        return {}
    if hydra_state.choices().get("experiment"):
        return {}
    return open_batch_and_lr(rule, cfg, lr, set(given_keys()))


def one_pass(cfg: DictConfig, dm, lr: float | None, rows: int, val_rows: int | None) -> dict:
    """budget.one_pass's epochs, batch size and lr cap, where the data's budget is one whole
    pass (min_steps to max_steps steps an epoch: a corpus of about 19k to 64k rows at batch 32)
    of single-label classes with a validation split trusted to pick the better epoch: the
    tweets, seeds 0-4, 0.820 test accuracy against one pass's 0.812 (benchmarks/RESULTS.md).
    The batch and lr only where the run leaves them open (open_batch_and_lr); none of it where
    the run sets its length (max_epochs, trainer.max_steps, budget.time), under an experiment
    or for LoRA. {} elsewhere."""
    rule = cfg.budget.get("one_pass") or {}
    given = set(given_keys())
    if not rule or not rule.get("epochs") or not dm.task.stratified or "validation" not in dm.dataset \
            or {"max_epochs", "max_steps"} & set(given_length(cfg.trainer)) \
            or cfg.budget.get("time") is not None or cfg.model.get("peft") \
            or hydra_state.choices().get("experiment"):
        return {}
    budget = training_length(cfg, rows, val_rows)[1]  # the data's budget as the run stands
    if budget["epochs"] != 1 or budget["keep"] != "best" \
            or not cfg.budget.min_steps <= budget["steps_per_epoch"] <= cfg.budget.max_steps:
        return {}
    log.info("budget.one_pass: the data's budget at batch %d, lr %g is one whole pass of %d steps",
             cfg.batch_size, cfg.lr if lr is None else lr, budget["steps_per_epoch"])
    return {"epochs": int(rule.epochs), **open_batch_and_lr(rule, cfg, lr, given)}


def make_plan(cfg: DictConfig, dm, lr: float | None = None, student: dict | None = None
              ) -> tuple[Plan, dict]:
    """The plan for the data module `dm`'s data on this machine, and metrics.json's record of
    each choice and why (budget, precision, budget.small_data or budget.one_pass)."""
    monitor, mode = resolve_monitor(cfg.monitor, cfg.mode, dm.task)
    validated = "validation" in dm.dataset  # (none: too small a split to carve, its rows train)
    rows, val_rows = len(dm.dataset["train"]), (dm.documents("validation") if validated
                                                else dm.val_trained)
    name, rule = "small_data", small_data(cfg, dm, lr)
    if not rule:
        name, rule = "one_pass", one_pass(cfg, dm, lr, rows, val_rows)
    if rule:
        why, keys = ((f"the {dm.val_trained} validation rows were too few to carve", "batch_size or lr")
                     if name == "small_data" else
                     ("validated at each epoch's end, the better epoch kept", "max_epochs, batch_size or lr"))
        log.info("budget.%s: %s (%s; set %s to choose them)", name, ", ".join(
            f"{k}={v:g}" for k, v in rule.items()), why, keys)
        dm.batch_size = rule.get("batch_size", dm.batch_size)  # (the data module is built)
        cfg = copy.deepcopy(cfg)
        with open_dict(cfg):
            cfg.update({k: v for k, v in rule.items() if k in ("batch_size", "lr")})
    length, chosen = decide(cfg, rows, val_rows, cfg.lr if lr is None else lr,
                            val_trains=not validated, passes=rule.get("epochs"))
    if rule:
        chosen[name] = rule
    plan = Plan(monitor, mode, chosen["precision"]["value"], MappingProxyType(length),
                rule.get("lr", lr), None if student is None else MappingProxyType(student),
                rule.get("batch_size"))
    return plan, chosen
