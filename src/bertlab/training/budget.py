"""How long to train when the user does not say: a budget that follows the training-set size.

The rule (constants in conf/train.yaml `budget`, sources in docs/data-and-defaults.md):
- at least `min_steps` optimizer steps, so that small data gets many epochs: few-sample
  fine-tuning fails from too few updates, not too many epochs (Mosbach et al. 2021, "On the
  Stability of Fine-tuning BERT"; Zhang et al. 2021, "Revisiting Few-sample BERT Fine-tuning");
- at most `max_epochs` epochs, so that the smallest sets do not train for ever (early stopping
  usually ends them sooner);
- at most `max_steps` steps, so that a large corpus gets one epoch or less;
- about `validations` validation passes over the run, at least one per epoch, so that early
  stopping and the best checkpoint see the curve (Dodge et al. 2020 stop bad runs early);
- a validation split of fewer than `trust_val_rows` rows is too noisy to pick an epoch by (at 50
  rows one standard error of accuracy is about 6 points; Perez et al. 2021, "True Few-Shot
  Learning with Language Models": selection on small held-out sets is close to chance), so the
  whole budget is trained, with no early stopping, and the last weights are kept as the best; a
  split that small carved out of the training file is not carved at all: its rows train too
  (`carved_val_trains`). Seeds 0-4, test accuracy: SST-2 at 8, 16, 32 and 64 rows a class +0.5,
  +0.1, +0.5 and -0.1 points, the tweets at 8 and 16 +1.2 and +1.8; SST-2's first 500 rows (seeds
  0-2) +0.8 (benchmarks/RESULTS.md, "Few labels", session 29).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass


# the trainer keys that say how long a run trains and how often it validates, and the values
# that leave a key open: what the user set wins, and the budget plans only the rest, around it
LENGTH_KEYS = {"max_epochs": (None,), "max_steps": (None, -1), "max_time": (None,),
               "limit_train_batches": (None, 1.0), "val_check_interval": (None,),
               "check_val_every_n_epoch": (None, 1)}


def given_length(t) -> dict:
    """The length keys that cfg.trainer sets (top-level max_epochs reaches it by interpolation)."""
    return {k: t.get(k) for k, unset in LENGTH_KEYS.items() if t.get(k) not in unset}


def carved_val_trains(cfg) -> int:
    """The size under which a validation split carved out of the training file is not carved
    (its rows train too), from a composed train config; 0: always carved. Only when the budget
    keeps the last weights anyway (`plan`: it sets the length and distrusts so small a split), and
    nothing else asks for the split: trainer.max_epochs, max_steps or a validation key the user
    set, calibrate, budget.time (it times validation passes), an Optuna trial (scored on it) and
    multi-label thresholds (data/labels.py: carve) keep it."""
    budget = cfg.get("budget") or {}
    asked = set(given_length(cfg.trainer)) - {"max_time", "limit_train_batches"}
    if asked or cfg.trainer.get("limit_val_batches") not in (None, 1.0) \
            or budget.get("time") is not None or cfg.get("calibrate") \
            or cfg.get("optuna_trial") is not None:
        return 0
    return int(budget.get("trust_val_rows") or 0)


@dataclass(frozen=True)
class Budget:
    rows: int                  # training rows
    batch_size: int            # rows per optimizer step, over all processes and accumulation
    steps_per_epoch: int       # optimizer steps in one pass
    epochs: int                # Lightning's max_epochs
    max_steps: int             # Lightning's max_steps (-1: the epochs decide)
    val_check_interval: int | float  # training batches between validations, or 1.0: epoch ends
    validations: int           # validation passes the run will make (fewer if it stops early)
    keep: str                  # "best": early stopping, the best validation; "last": the whole budget's
    why: str

    def as_dict(self) -> dict:
        return asdict(self)


def plan(rows: int, batch_size: int, accumulate: int = 1, processes: int = 1,
         min_steps: int = 600, max_epochs: int = 10, max_steps: int = 2000,
         validations: int = 8, val_rows: int | None = None, trust_val_rows: int = 200,
         val_trains: bool = False, passes: int | None = None) -> Budget:
    """The budget for `rows` training rows and `val_rows` validation rows (None: enough;
    `val_trains`: a split of that size was not carved, its rows are in `rows`; `passes`: that many
    whole epochs instead, budget.one_pass's, decided by the caller); a pure function of its
    arguments."""
    if rows < 1:
        raise ValueError(f"rows={rows}: nothing to train on")
    keep, kept = "best", ""
    if val_rows is not None and val_rows < trust_val_rows:
        keep, kept = "last", (f"; {val_rows} validation rows (under {trust_val_rows}) are too few to "
                              f"pick an epoch by: {'they train too, ' if val_trains else ''}no early "
                              "stopping, the last weights are kept")
    batches = math.ceil(rows / (batch_size * processes))  # per process, what Lightning counts
    per_epoch = max(1, batches // accumulate)
    epochs = min(max_epochs, max(1, math.ceil(min_steps / per_epoch)))
    rows_per_step = batch_size * accumulate * processes
    head = f"{rows} rows at {rows_per_step} a step are {per_epoch} steps an epoch"
    if passes:  # budget.one_pass: whole epochs, validated at each end, none cut
        why = f"{head}: {passes} epochs for {passes * per_epoch} steps (budget.one_pass){kept}"
        return Budget(rows, rows_per_step, per_epoch, passes, -1, 1.0, passes, keep, why)
    if epochs > 1:  # small data: several epochs, validated at each end
        capped = epochs == max_epochs and epochs * per_epoch < min_steps
        why = (f"{head}: {epochs} epochs for {epochs * per_epoch} steps "
               f"({'the most epochs allowed' if capped else f'at least {min_steps}'}){kept}")
        return Budget(rows, rows_per_step, per_epoch, epochs, -1, 1.0, epochs, keep, why)
    # one epoch or less: `validations` evenly spaced checks, the last one at the last step (with
    # no validation split, the whole pass: no grid to cut it to)
    total = min(per_epoch, max_steps)
    every = total if val_trains else max(1, total // validations)
    steps = total if val_trains else every * min(validations, total)
    checks = "" if val_trains else f", validated every {every} steps"
    why = (f"{head}: one pass{'' if steps == per_epoch else f' cut to {steps} steps'} "
           f"(at most {max_steps}){checks}{kept}")
    return Budget(rows, rows_per_step, per_epoch, 1, steps, every * accumulate,
                  steps // every, keep, why)


TIME_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_time(value) -> float:
    """`budget.time` in seconds: 90s, 10m, 1h, 1h30m, 1.5h, a plain number of seconds, or
    Lightning's DD:HH:MM:SS (HH:MM:SS, MM:SS). A ValueError names what is valid."""
    import re

    valid = "use a duration such as 90s, 10m, 1h or 1h30m (or seconds, or DD:HH:MM:SS)"
    if isinstance(value, bool):
        raise ValueError(f"budget.time={value} is not valid; {valid}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        text = str(value).strip().lower().replace(" ", "")
        parts = re.findall(r"(\d+(?:\.\d+)?)([smhd])", text)
        if ":" in text and re.fullmatch(r"\d+(:\d+){1,3}", text):
            seconds = sum(int(n) * f for n, f in zip(reversed(text.split(":")), (1, 60, 3600, 86400)))
        elif parts and "".join(n + u for n, u in parts) == text:
            seconds = sum(float(n) * TIME_UNITS[u] for n, u in parts)
        elif re.fullmatch(r"\d+(\.\d+)?", text):
            seconds = float(text)
        else:
            raise ValueError(f"budget.time={value!r} is not valid; {valid}")
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"budget.time={value!r} is not valid: it must be longer than 0; {valid}")
    return seconds
