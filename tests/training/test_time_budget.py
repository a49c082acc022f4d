"""budget.time (issue 39): the duration's forms, the plan fitted to a measured step time, the
data's budget and the user's length winning where they should, and the time a resumed run spent."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch
from lightning.pytorch.callbacks import Callback

from bertlab.errors import ConfigError
from bertlab.training.budget import parse_time
from bertlab.training.train import train

FAST = ["data.max_samples=160", "batch_size=16", "max_epochs=null"]  # the data's budget: 80 steps


class Slow(Callback):
    """Steps that take a known time: the tiny model's take milliseconds."""

    def __init__(self, seconds: float):
        self.seconds = seconds

    def on_train_batch_end(self, *args):
        time.sleep(self.seconds)


@pytest.mark.parametrize("given, seconds", [
    ("90s", 90), ("10m", 600), ("1h", 3600), ("1h30m", 5400), ("1.5h", 5400), ("2m30s", 150),
    (45, 45), (2.5, 2.5), ("120", 120), ("00:01:30", 90), ("01:00:00:00", 86400), ("1:30", 90)])
def test_a_duration_is_read_in_every_documented_form(given, seconds):
    assert parse_time(given) == seconds


@pytest.mark.parametrize("given", [0, -5, "0s", "-5m", "10 minutes", "ten", "10m30", "1x", True,
                                   "", float("inf"), float("nan")])
def test_a_bad_duration_names_the_valid_forms(given):
    with pytest.raises(ValueError, match="use a duration such as 90s, 10m, 1h"):
        parse_time(given)


def metrics_of(cfg):
    return json.loads(Path(cfg.output_dir, "metrics.json").read_text())


def test_the_time_plans_the_steps_and_the_schedule_decays_by_the_end(make_cfg):
    """Steps of 0.25 s and 14 s in all: the data's 80 steps would take 20 s alone, so fewer are
    planned whatever the start-up costs, the lr schedule fitted to them (linear: zero at the last
    step), the plan recorded. (Steps of 0.1 s made 80 fit on a machine with a fast start-up.)"""
    cfg = make_cfg(*FAST, "budget.time=14s", "+callbacks.slow={_target_: test_time_budget.Slow, "
                   "seconds: 0.25}")
    train(cfg)
    m = metrics_of(cfg)
    plans = m["budget"]["time"]["plans"]
    assert m["status"] == "finished" and plans and plans[0]["step_seconds"] >= 0.25
    assert m["stopped_by"] == "budget.time"
    assert plans[-1]["steps"] < m["budget"]["max_steps"] == 80 and m["steps"] <= plans[-1]["steps"]
    assert m["budget"]["time"]["lr_at_end"] <= 0.1 * cfg.lr  # decayed, not cut off mid-schedule
    state = torch.load(cfg.output_dir + "/checkpoints/last.ckpt", weights_only=True)["callbacks"]
    assert state["TimeBudget"]["spent"] > 0  # what a resume counts


def test_the_data_budget_wins_when_the_time_is_ample(make_cfg):
    cfg = make_cfg(*FAST, "budget.time=10m")
    train(cfg)
    m = metrics_of(cfg)
    assert m["steps"] == 80 and m["budget"]["time"]["plans"][-1]["steps"] == 80
    assert m["stopped_by"] == "max_steps"  # (the data's budget)
    assert m["budget"]["time"]["lr_at_end"] <= 0.1 * cfg.lr


def test_a_given_length_wins_over_the_time(make_cfg):
    """max_epochs given: trained as set; budget.time is a stop only (Lightning's max_time)."""
    cfg = make_cfg(*FAST, "max_epochs=2", "budget.time=10m")
    train(cfg)
    m = metrics_of(cfg)
    assert m["epochs"] == 2 and m["steps"] == 16
    assert m["budget"]["time"]["seconds"] == 600 and m["budget"]["time"]["plans"] == []


def test_a_resumed_run_counts_the_time_its_earlier_parts_spent(make_cfg, tmp_path):
    from bertlab.training.time_plan import time_budget

    ckpt = tmp_path / "last.ckpt"
    torch.save({"callbacks": {"TimeBudget": {"spent": 50.0}}}, ckpt)
    cfg = make_cfg("budget.time=55s")
    with pytest.raises(ConfigError, match="budget.time=55s is shorter than the start-up: 5. s went "
                                          "before .* and the earlier parts of this run"):
        time_budget(cfg, {"max_steps": 10}, {"given": {}}, None, None, time.time(), ckpt)


def test_a_budget_shorter_than_two_validation_passes_is_refused_before_training():
    """The sanity check's batches, scaled by their tokens to the whole split, say what one
    validation pass costs; a time left that holds fewer than two (and the exit) is one line."""
    from types import SimpleNamespace

    from bertlab.callbacks.time_budget import TimeBudget

    now = time.time()
    strategy = SimpleNamespace(broadcast=lambda value, src=0: value)
    trainer = SimpleNamespace(num_sanity_val_batches=[2], num_val_batches=[10], strategy=strategy)
    # two batches of 100 tokens timed, 10 of 100 in the split: a pass is ~5x the sanity check
    clock = TimeBudget(now, 12.0, 100, 8, 1, True, None, val_tokens=[100] * 10, test_tokens=1000)
    clock.on_sanity_check_start(trainer, None)
    clock._val_start -= 1.0  # (the sanity check took a second)
    with pytest.raises(ConfigError, match=r"budget.time=12s is too short: 1\d s are left after the "
                                          r"start-up, and one validation pass takes about 5 s"):
        clock.on_sanity_check_end(trainer, None)
    roomy = TimeBudget(now, 60.0, 100, 8, 1, True, None, val_tokens=[100] * 10, test_tokens=1000)
    roomy.on_sanity_check_start(trainer, None)
    roomy._val_start -= 1.0
    roomy.on_sanity_check_end(trainer, None)
    assert roomy.val_time == pytest.approx(5.0, abs=0.5)  # the first guess, until a real pass


def test_the_first_guess_leaves_out_the_sanity_checks_warm_up_batch():
    """The first sanity batch pays one-time costs (a 1-minute tweets budget ended 14 s early when
    it counted): the guess scales the batches after it by their tokens."""
    from types import SimpleNamespace

    from bertlab.callbacks.time_budget import TimeBudget

    trainer = SimpleNamespace(num_sanity_val_batches=[2], sanity_checking=True,
                              strategy=SimpleNamespace(broadcast=lambda value, src=0: value))
    clock = TimeBudget(time.time(), 600.0, 100, 8, 1, True, None, val_tokens=[100] * 10)
    clock.on_sanity_check_start(trainer, None)
    for seconds in (1.0, 0.1):  # a slow first batch, then one at the pass's real pace
        clock.on_validation_batch_start(trainer, None, None, 0)
        clock._batch_start -= seconds
        clock.on_validation_batch_end(trainer, None, None, None, 0)
    clock._val_start -= 1.1  # (the whole check: the two batches)
    clock.on_sanity_check_end(trainer, None)
    assert clock.val_time == pytest.approx(1.0, abs=0.05)  # 0.1 s x 10 batches, not 1.1 s x 5


def test_a_head_refit_is_kept_time_for_after_training(make_cfg):
    """model.head_refit validates twice and reads the training rows once after training: the
    reserve counts those passes (in validation passes, by padded tokens), and the run finishes."""
    from types import SimpleNamespace

    from bertlab.training.time_plan import refit_passes

    dm = SimpleNamespace(eval_batch_size=2, dataset={"train": {"length": [4, 8, 8, 8]},
                                                     "validation": {"length": [8, 8]}})
    assert refit_passes(dm) == 2 + (2 * 8 + 2 * 8) / (2 * 8)  # padded: batches of 2, longest row each
    cfg = make_cfg(*FAST, "model.pooling=mean", "budget.time=10m")
    train(cfg)
    m = metrics_of(cfg)
    assert m["status"] == "finished" and m["head_refit"]["kept"]
