"""budget.time: the run fitted to a wall time. After a few steps it measures its own step time
(and the validation pass's, from the sanity check, then from each real one) and sets the steps,
the validation interval and the lr schedule's length to what the time left holds, re-planning
after each validation, so that the schedule has decayed by the end instead of being cut off.
Lightning's `max_time` (its Timer) stays the hard stop. Hand-written: Lightning's Timer only
stops a run, it plans nothing."""
from __future__ import annotations

import logging
import math
import time

from lightning.pytorch.callbacks import Callback

from bertlab.errors import ConfigError

log = logging.getLogger(__name__)

WARM = 2     # optimizer steps before timing starts (the first ones allocate and warm caches)
PROBE = 8    # optimizer steps timed
AFTER = 3.5  # seconds the command needs after the final scoring (checkpoint load, report, exit;
             # 5.0 until the exit skipped the collector's last walk and checkpoints were written directly)
SHARE = 0.2  # the most of the time left that validations may take


class TimeBudget(Callback):
    def __init__(self, began: float, seconds: float, cap: int, validations: int,
                 accumulate: int, plan_validation: bool, schedule: callable | None,
                 val_tokens: list[int] = (), test_tokens: int = 0, spent: float = 0.0,
                 plan_steps: bool = True, extra_validations: int = 0):
        """`began`: the time.time() this part of the run started (the process, or a sweep's
        job); `seconds`: the whole run's time, of which its earlier parts `spent` some; `cap`: the
        most optimizer steps (the data's budget); `validations`: how many the run makes;
        `plan_validation`: the interval is ours to set (the user gave none); `schedule(total)`:
        the lr lambdas for `total` steps (None: a schedule that does not depend on the length);
        `val_tokens`: the padded tokens of each validation batch, in order, and `test_tokens` the
        test split's: what scales a timed batch to a pass, and the final scoring's cost;
        `plan_steps`: False when the user set the length (it then only stops in time);
        `extra_validations`: validation passes' worth of work after training besides the final
        scoring's (a soup's validations, model.head_refit's)."""
        self.began, self.seconds, self.cap, self.spent = began, seconds, cap, spent
        self.deadline = began + seconds - spent  # the command has exited by then
        self.validations, self.accumulate = validations, accumulate
        self.plan_validation, self.schedule = plan_validation, schedule
        self.val_tokens, self.test_tokens = list(val_tokens), test_tokens
        self.plan_steps, self.extra_validations = plan_steps, extra_validations
        self.step_time = None
        self.val_time = self.pass_time = None  # a validation in training (with its saves); a pass alone
        self.total = cap
        self.record: dict = {"seconds": seconds, "spent_before": round(spent, 1), "plans": []}
        self._mark = self._val_start = self._pass_end = None
        self._val_seconds, self._passes, self._saves = 0.0, [], []
        self._step0 = None
        self._validated = 0
        self._sanity: list[float] = []
        self._batch_start = None

    # ---- what the time left holds
    def reserve(self) -> float:
        """Seconds kept for after training: the best checkpoint's validation and test (a soup's
        validations and a head refit's too), and the report and exit."""
        passes = 1 + self.extra_validations + self.test_tokens / max(1, sum(self.val_tokens))
        return (self.pass_time or 0.0) * passes + AFTER

    def replan(self, trainer, why: str) -> None:
        now, step = time.time(), trainer.global_step
        val = self.val_time or 0.0
        left = self.deadline - now - self.reserve()
        # validations take at most SHARE of the time left (a short budget validates less often)
        wanted = self.validations if not val else min(self.validations, max(1, int(SHARE * left / val)))
        remaining = max(1, wanted - self._validated)
        fit = math.floor((left - remaining * val) / self.step_time) if self.step_time else 0
        total = min(self.cap, step + max(0, fit))
        total, wanted = trainer.strategy.broadcast([total, wanted], src=0)  # (DDP: one plan for all)
        self.total = total
        trainer.fit_loop.epoch_loop.max_steps = total  # (what trainer.max_steps reads)
        every = max(1, math.ceil(total / wanted))  # evenly, the last at `total`
        if self.plan_validation and not self._validated:
            trainer.val_check_batch = every * self.accumulate
        else:  # (kept once validations began: a moved grid would validate twice in a row)
            every = trainer.val_check_batch // self.accumulate if self.plan_validation else every
        if self.schedule is not None:
            for scheduler in trainer.lr_scheduler_configs:
                scheduler.scheduler.lr_lambdas = self.schedule(total)
        plan = {"at_step": step, "why": why, "step_seconds": round(self.step_time or 0, 4),
                "validation_seconds": round(val, 2), "seconds_left": round(left, 1),
                "steps": total, "validate_every": every if self.plan_validation else None}
        self.record["plans"].append(plan)
        if trainer.is_global_zero:
            log.info("budget.time: %s; %.3f s a step, %.1f s a validation, %.0f s left: %d steps "
                     "(the data's budget: %d)%s", why, self.step_time or 0, val, left, total,
                     self.cap, f", validated every {every}" if self.plan_validation else "")
        if total <= step:
            trainer.should_stop = True

    # ---- measurements
    def on_sanity_check_start(self, trainer, pl_module):
        self._val_start = time.time()
        self._sanity = []  # each sanity batch's seconds

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        if trainer.sanity_checking:
            self._batch_start = time.time()

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        if trainer.sanity_checking:
            self._sanity.append(time.time() - self._batch_start)

    def on_sanity_check_end(self, trainer, pl_module):
        batches = sum(trainer.num_sanity_val_batches) if trainer.num_sanity_val_batches else 0
        if batches:  # a first guess at a validation pass, before any training
            seen = sum(self.val_tokens[:batches]) or 1
            guess = (time.time() - self._val_start) * max(1.0, sum(self.val_tokens) / seen)
            if len(self._sanity) > 1:  # the batches after the first (which warms up), scaled:
                # the whole check, first batch included, made a 1-minute budget end 14 s early
                timed = sum(self.val_tokens[1:len(self._sanity)]) or 1  # their tokens
                guess = min(guess, sum(self._sanity[1:]) * max(1.0, sum(self.val_tokens) / timed))
            left = self.deadline - time.time()
            guess, left = trainer.strategy.broadcast([guess, left], src=0)
            if left < 2 * guess + AFTER:
                raise ConfigError(
                    f"budget.time={self.seconds:g}s is too short: {left:.0f} s are left after the "
                    f"start-up, and one validation pass takes about {guess:.0f} s (training needs "
                    f"at least one, and the final scoring another); give more time, or a smaller "
                    f"validation split")
            self.val_time = self.pass_time = guess

    def on_train_start(self, trainer, pl_module):
        self._step0 = trainer.global_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        step = trainer.global_step - self._step0
        if self.step_time is None and step == WARM and self._mark is None:
            self._mark = (time.time(), self._val_seconds)
        elif self.step_time is None and self._mark is not None and step >= WARM + PROBE:
            spent = time.time() - self._mark[0] - (self._val_seconds - self._mark[1])
            self.step_time = spent / (step - WARM)
            if self.plan_steps:
                self.replan(trainer, f"measured over steps {WARM + 1}-{step}")
        if trainer.should_stop:
            return
        val = self.val_time or 0.0  # (stopping validates once more, then the final scoring)
        late = time.time() > self.deadline - val - self.reserve()
        late, = trainer.strategy.broadcast([late], src=0)
        late = late and not (self.plan_steps and trainer.global_step >= self.total)
        if late:  # (a slower stretch than measured: stop while the final scoring still fits)
            self.record["stopped_early_at_step"] = trainer.global_step
            log.info("budget.time: stopping at step %d, the time left is the final scoring's",
                     trainer.global_step)
        if late or self.plan_steps and trainer.global_step >= self.total:
            trainer.should_stop = True  # (validates at this step, then ends: the best kept)

    def on_train_end(self, trainer, pl_module):
        self.record["at_the_end"] = {"seconds_left": round(self.deadline - time.time(), 1),
                                     "kept_for_scoring": round(self.reserve(), 1)}
        if trainer.optimizers:
            self.record["lr_at_end"] = trainer.optimizers[0].param_groups[0]["lr"]

    def on_validation_start(self, trainer, pl_module):
        if not trainer.sanity_checking:
            self._val_start = time.time()

    def on_validation_epoch_end(self, trainer, pl_module):
        self._pass_end = time.time()  # (the checkpoints are saved after this, in on_validation_end)

    def on_validation_end(self, trainer, pl_module):
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        now = time.time()
        self._val_seconds += now - self._val_start
        self._validated += 1
        self._passes.append(self._pass_end - self._val_start)
        self._saves.append(now - self._pass_end)
        self.pass_time = sum(self._passes) / len(self._passes)
        self.val_time = self.pass_time + sum(self._saves) / len(self._saves)
        if self.step_time is None or not self.plan_steps or trainer.should_stop:
            return
        steps = trainer.global_step - self._step0 - WARM  # the steps' mean so far, validations left out
        self.step_time = (now - self._mark[0] - (self._val_seconds - self._mark[1])) / steps
        self.replan(trainer, f"after validation {self._validated}")

    # ---- resume: the time already spent counts
    def state_dict(self) -> dict:
        return {"spent": self.spent + time.time() - self.began, "total": self.total}

    def load_state_dict(self, state_dict: dict) -> None:
        pass  # (read before the trainer is built: training/trainer.py time_budget)
