"""Defaults that fit the data, the model and the hardware: the training budget, the per-model lr,
precision=auto, the monitored metric, and k-fold cross-validation."""
from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import pytest
import torch

from bertlab.training.budget import plan
from bertlab.cli.checks import resolve_monitor
from bertlab.errors import ConfigError
from bertlab.models.network import choose_pooling
from bertlab.training.plugins import choose_precision, trainer_plugins
from bertlab.cli.resolvers import recommended_lr
from bertlab.training.train import train

FAST = ["data.max_samples=160", "batch_size=16"]


# ---- the budget rule, a pure function ---------------------------------------------------------
@pytest.mark.parametrize("rows, epochs, max_steps, validations", [
    (100, 10, -1, 10),        # 4 steps an epoch: the epoch cap, not 600 steps
    (900, 10, -1, 10),        # 29 steps an epoch: still capped
    (3600, 6, -1, 6),         # 113 steps an epoch: 6 epochs reach 600 steps
    (6000, 4, -1, 4),         # 188 steps an epoch
    (33342, 1, 1040, 8),      # the tweets: one pass, 8 validations of 130 steps
    (54500, 1, 1704, 8),      # one whole pass, 213 steps between validations
    (66349, 1, 2000, 8),      # SST-2 (1,000 rows carved): the step cap, 250 between validations
    (1_000_000, 1, 2000, 8),  # a large corpus: 2000 steps, inside the first epoch
])
def test_budget_follows_the_row_count(rows, epochs, max_steps, validations):
    b = plan(rows, 32)
    assert (b.epochs, b.max_steps, b.validations) == (epochs, max_steps, validations)
    steps = b.max_steps if b.max_steps != -1 else b.epochs * b.steps_per_epoch
    assert steps >= min(600, b.epochs * b.steps_per_epoch) and steps <= 2000
    if b.epochs > 1:
        assert b.val_check_interval == 1.0  # each epoch's end
    else:
        assert b.val_check_interval * b.validations == b.max_steps  # the last step is validated
    assert str(rows) in b.why


def test_budget_counts_accumulation_and_processes():
    b = plan(6400, 32, accumulate=2, processes=2)
    assert b.batch_size == 128 and b.steps_per_epoch == 50 and b.epochs == 10
    one = plan(64_000, 32, accumulate=2, validations=4)
    assert one.steps_per_epoch == 1000 and one.max_steps == 1000
    assert one.val_check_interval == 2 * 250  # batches, not optimizer steps


def test_budget_constants_come_from_the_config():
    b = plan(3600, 32, min_steps=100, max_epochs=3, max_steps=50, validations=5)
    assert (b.epochs, b.max_steps, b.val_check_interval) == (1, 50, 10)


@pytest.mark.parametrize("rows, val_rows, trust, keep", [
    (450, 50, 200, "last"),      # SST-2's first 500 rows, 10% carved: too few to pick an epoch by
    (900, 199, 200, "last"),
    (900, 200, 200, "best"),
    (3600, 400, 200, "best"),
    (30500, 3800, 200, "best"),  # the tweets
    (450, 50, 0, "best"),        # 0: always pick by the monitor
    (450, None, 200, "best"),    # no count given: nothing to distrust
    (1_000_000, 20, 200, "last"),  # one pass, but validated on 20 rows
])
def test_a_small_validation_split_keeps_the_last_weights(rows, val_rows, trust, keep):
    b = plan(rows, 32, val_rows=val_rows, trust_val_rows=trust)
    assert b.keep == keep
    assert (f"{val_rows} validation rows (under {trust})" in b.why) == (keep == "last")
    assert (b.epochs, b.max_steps) == (plan(rows, 32).epochs, plan(rows, 32).max_steps)  # same length


def test_a_one_pass_budget_without_a_validation_split_trains_the_whole_pass():
    """Its steps were cut to a multiple of the validation grid (9 steps -> 8) with nothing to validate."""
    b = plan(144, 16, min_steps=1, val_rows=16, val_trains=True)
    assert (b.epochs, b.max_steps, b.keep) == (1, 9, "last") and "they train too" in b.why
    assert "validated every" not in b.why
    assert plan(144, 16, min_steps=1, val_rows=16).max_steps == 8  # (validated: every step, 8 times)


# ---- a run follows the budget, and explicit values win -----------------------------------------
def metrics_of(make_cfg, *overrides):
    cfg = make_cfg(*FAST, *overrides)
    train(cfg)
    return json.loads((Path(cfg.output_dir) / "metrics.json").read_text())


def test_a_run_without_max_epochs_follows_the_budget(make_cfg):
    m = metrics_of(make_cfg, "max_epochs=null", "budget.min_steps=30", "~callbacks.early_stopping",
                   "budget.trust_val_rows=0")  # (a validation split of 16 rows is carved)
    b = m["budget"]
    # 160 rows: 128 train (16 val, 16 test) at 16 a step = 8 steps; 30 steps need 4 epochs
    assert (b["rows"], b["steps_per_epoch"], b["epochs"], b["max_steps"]) == (128, 8, 4, -1)
    assert m["epochs"] == 4 and m["steps"] == 32 and m["stopped_by"] == "max_epochs"
    assert "128 rows" in b["why"]


def test_a_large_budget_validates_inside_the_one_epoch(make_cfg, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    m = metrics_of(make_cfg, "max_epochs=null", "budget.min_steps=1", "budget.validations=3",
                   "~callbacks.early_stopping", "budget.trust_val_rows=0",
                   "budget.one_pass.epochs=null")  # (the one pass's grid, not budget.one_pass's epochs)
    b = m["budget"]
    assert (b["epochs"], b["max_steps"], b["val_check_interval"], b["validations"]) == (1, 6, 2, 3)
    assert m["steps"] == 6 and m["stopped_by"] == "max_steps"
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    assert [e.step for e in events.Scalars("val/acc")][:3] == [1, 3, 5]  # after steps 2, 4, 6


# early stopping that would end the run at its second validation (nothing improves by 1.0)
STOP_AT_ONCE = ["callbacks.early_stopping.patience=0", "callbacks.early_stopping.min_delta=1.0",
                "max_epochs=null", "budget.min_steps=30"]


# val/loss: a min-mode monitor, as regression's auto one
@pytest.mark.parametrize("monitor", ["auto", "val/loss"])
def test_a_run_with_a_small_validation_split_trains_whole_and_keeps_the_last(make_cfg, tmp_path,
                                                                              monitor, monkeypatch):
    from bertlab.training.plugins import AtomicCheckpointIO

    written, save = [], AtomicCheckpointIO.save_checkpoint
    monkeypatch.setattr(AtomicCheckpointIO, "save_checkpoint", lambda self, c, path, *a, **k: (
        written.append(Path(path).name), save(self, c, path, *a, **k)))
    m = metrics_of(make_cfg, *STOP_AT_ONCE, f"monitor={monitor}")  # 16 validation rows, under 200
    assert m["budget"]["keep"] == "last" and "16 validation rows (under 200)" in m["budget"]["why"]
    # ... are not carved: they train too (144 rows at 16 a step, 9 steps an epoch), none validates
    assert "they train too" in m["budget"]["why"] and m["budget"]["rows"] == 144
    assert m["data"]["rows"] == {"train": 144, "test": 16}
    assert m["data"]["validation"] == {"not_carved_rows": 16} and m["budget"]["validations"] == 0
    assert not [k for k in m if k.startswith("val/")] and "test/acc" in m
    assert m["fit"].startswith("unknown: no validation split") and "analysis" not in m
    assert m["stopped_by"] == "max_epochs" and m["epochs"] == 4 and m["steps"] == 36
    assert m["best_epoch"] == 3  # the last epoch's weights ...
    ckpts = tmp_path / "run" / "checkpoints"
    best, last = (torch.load(ckpts / f, weights_only=True, mmap=True) for f in ("best.ckpt", "last.ckpt"))
    assert best["global_step"] == last["global_step"] == 36  # ... saved at the last step
    assert all(torch.equal(best["state_dict"][k], v) for k, v in last["state_dict"].items())
    # best.ckpt is written once, at the end, not at each of the 4 epochs (and once more by the
    # head refit, where it refits); last.ckpt once, at the end (preemption's are 10 minutes apart)
    assert written.count("best.ckpt") == 1 + ("head_refit" in m)
    assert written.count("last.ckpt") == 1
    assert not (tmp_path / "run" / "tensorboard").rglob("*") or not any(
        "val/" in tag for tag in tags(tmp_path / "run" / "tensorboard"))


def test_a_run_that_keeps_the_last_and_diverges_keeps_the_epoch_before(make_cfg, tmp_path,
                                                                      monkeypatch):
    from bertlab.errors import Diverged
    from bertlab.models.classifier import TextClassifier

    step = TextClassifier.training_step

    def diverging(self, batch, batch_idx):
        if self.global_step == 20:  # in the third epoch (9 steps an epoch)
            raise Diverged("the training loss became nan at step 20")
        return step(self, batch, batch_idx)

    monkeypatch.setattr(TextClassifier, "training_step", diverging)
    m = metrics_of(make_cfg, *STOP_AT_ONCE)
    assert m["budget"]["keep"] == "last" and m["status"] == "diverged"
    best = torch.load(tmp_path / "run" / "checkpoints" / "best.ckpt", weights_only=True, mmap=True)
    assert best["global_step"] == 18 and m["best_epoch"] == 1 and "test/acc" in m


def tags(folder) -> list[str]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder))
    events.Reload()
    return events.Tags()["scalars"]


@pytest.mark.parametrize("asks", ["max_epochs=4", "trainer.val_check_interval=4",
                                  "trainer.check_val_every_n_epoch=2", "calibrate=true",
                                  "budget.time=10m", "budget.trust_val_rows=0",
                                  "data.validation_file=VAL"])
def test_a_small_validation_split_is_carved_where_something_asks_for_it(make_cfg, files, asks):
    """What reads the split (a length or validation key the user set, calibration, the time
    budget's timing) keeps it, and validates on it; a validation file is the user's own."""
    if asks.endswith("VAL"):  # (20 rows: under 200, and used as they are)
        asks = (f"data.validation_file={files('val.csv', 20, seed=3)} data=files "
                f"data.train_file={files('train.csv', 160)}")
    m = metrics_of(make_cfg, *STOP_AT_ONCE[:2], "max_epochs=null", "budget.min_steps=9",
                   *asks.split())
    assert "validation" in m["data"]["rows"] and "val/acc" in m
    assert "validation" not in m["data"] and "they train too" not in m["budget"]["why"]


@pytest.mark.parametrize("overrides, under", [
    ([], 200), (["budget.trust_val_rows=50"], 50), (["trainer.max_time=00:00:10:00"], 200),
    (["trainer.limit_train_batches=3"], 200), (["+trainer.limit_val_batches=0.5"], 0),
    (["+optuna_trial=3"], 0), (["max_epochs=3"], 0), (["trainer.max_steps=40"], 0),
    (["budget.time=90s"], 0), (["calibrate=true"], 0)])
def test_the_rule_that_lets_a_small_validation_split_train(make_cfg, overrides, under):
    from bertlab.training.budget import carved_val_trains

    assert carved_val_trains(make_cfg("max_epochs=null", *overrides)) == under


@pytest.mark.parametrize("overrides, small", [
    ([], {"batch_size": 16, "lr": 3e-5}),              # both open: SetFit's few-label recipe
    (["lr=5e-4"], {"batch_size": 16}),                  # the user's lr wins
    (["batch_size=8"], {"lr": 3e-5}),                   # ... and their batch
    (["budget.small_data.max_lr=null"], {"batch_size": 16}),
    (["budget.small_data.batch_size=null", "budget.small_data.max_lr=null"], None),
    (["budget.trust_val_rows=0"], None),                # a validation split carved: not small data
    (["model.peft=lora"], {"batch_size": 16}),          # a LoRA rate is no full fine-tuning's
    (["budget.small_data.max_rows_a_class=40"], None),  # 144 rows of 3 classes: 48 a class
])
def test_small_data_trains_with_smaller_batches_at_a_lower_rate(make_cfg, tmp_path, overrides, small):
    cfg = make_cfg("data.max_samples=160", "max_epochs=null", "budget.max_epochs=1", *overrides)
    train(cfg)
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert m.get("small_data") == small
    batch = (small or {}).get("batch_size") or cfg.batch_size
    rows = 128 if "budget.trust_val_rows=0" in overrides else 144
    assert m["budget"]["batch_size"] == batch and m["steps"] == math.ceil(rows / batch)
    assert m["lr"]["value"] == (small or {}).get("lr", cfg.lr)
    from omegaconf import OmegaConf

    recorded = OmegaConf.load(tmp_path / "run" / ".hydra" / "config.yaml")  # what a resume reads
    assert recorded.batch_size == batch and recorded.lr == m["lr"]["value"]


# 160 rows, 32 carved to validate: 128 at batch 32 are 4 steps an epoch, one whole pass between
# min_steps 4 and max_steps 10 (a corpus of 19k-64k rows at the defaults)
ONE_PASS = ["data.max_samples=160", "max_epochs=null", "budget.trust_val_rows=0", "budget.min_steps=4",
            "budget.max_steps=10"]


@pytest.mark.parametrize("overrides, rule", [
    ([], {"epochs": 2, "batch_size": 16, "lr": 5e-5}),  # all open: two epochs of 16 at a capped rate
    (["lr=5e-4"], {"epochs": 2, "batch_size": 16}),     # the user's lr wins
    (["batch_size=24"], {"epochs": 2, "lr": 5e-5}),     # ... and their batch (6 steps: one pass too)
    (["budget.one_pass.max_lr=null", "budget.one_pass.batch_size=null"], {"epochs": 2}),
    (["budget.one_pass.epochs=null"], None),            # off
    (["budget.max_steps=3"], None),                     # one pass cut to 3 steps: a larger corpus
    (["budget.min_steps=5"], None),                     # 4 steps an epoch: two epochs already
    (["trainer.max_steps=5"], None),                    # a length the user set
    (["budget.time=10m"], None),                        # ... or a time
    (["model.peft=lora"], None),                        # LoRA keeps its own recipe
    (["data=valence"], None),                           # regression: not measured, one pass
])
def test_a_corpus_of_one_pass_trains_two_epochs_of_smaller_steps(make_cfg, tmp_path, overrides, rule):
    cfg = make_cfg(*ONE_PASS, *overrides)
    train(cfg)
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert m.get("one_pass") == rule
    batch = (rule or {}).get("batch_size") or cfg.batch_size
    assert m["budget"].get("batch_size", batch) == batch  # (a length the user set: not planned)
    assert m["lr"]["value"] == (rule or {}).get("lr", cfg.lr)
    if rule:
        assert m["budget"]["max_epochs"] == 2 and m["steps"] == 2 * math.ceil(128 / batch)
        assert m["budget"]["validations"] == 2 and "budget.one_pass" in m["budget"]["why"]
    from omegaconf import OmegaConf

    recorded = OmegaConf.load(tmp_path / "run" / ".hydra" / "config.yaml")  # what a resume reads
    assert recorded.batch_size == batch and recorded.lr == m["lr"]["value"]


def test_one_pass_passes_are_whole_epochs_validated_at_each_end():
    b = plan(33342, 16, passes=2)  # the tweets at budget.one_pass's batch: no step cap
    assert (b.epochs, b.max_steps, b.val_check_interval, b.validations) == (2, -1, 1.0, 2)
    assert b.steps_per_epoch == 2084 and "budget.one_pass" in b.why


def test_a_resumed_run_still_keeps_the_last(make_cfg, tmp_path):
    import time

    from bertlab.training.train import fit_and_report

    run = tmp_path / "run"
    metrics_of(make_cfg, *STOP_AT_ONCE, "budget.max_epochs=2")  # 2 of the 4 epochs, then stopped
    last = run / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True, mmap=True)["global_step"] == 18  # (9 steps an epoch)
    fit_and_report(make_cfg(*FAST, *STOP_AT_ONCE), run, last, 18, time.time())  # ... and resumed
    m = json.loads((run / "metrics.json").read_text())
    assert m["budget"]["keep"] == "last" and m["stopped_by"] == "max_epochs" and m["steps"] == 36
    best = torch.load(run / "checkpoints" / "best.ckpt", weights_only=True, mmap=True)
    assert best["global_step"] == 36 and m["best_epoch"] == 3


@pytest.mark.parametrize("override", ["budget.trust_val_rows=0", "budget.trust_val_rows=16"])
def test_a_trusted_validation_split_stops_early_and_keeps_the_best(make_cfg, override):
    m = metrics_of(make_cfg, *STOP_AT_ONCE, override)
    assert m["budget"]["keep"] == "best" and "validation rows" not in m["budget"]["why"]
    assert m["stopped_by"] == "early stopping" and m["epochs"] < 4 and m["best_epoch"] < 3


def test_explicit_length_keeps_early_stopping(make_cfg):
    m = metrics_of(make_cfg, *STOP_AT_ONCE[:2], "max_epochs=4")
    assert m["budget"]["keep"] == "best" and m["stopped_by"] == "early stopping"


@pytest.mark.parametrize("given, epochs, steps", [("max_epochs=2", 2, 16),
                                                  ("trainer.max_steps=5", 1, 5)])
def test_explicit_length_wins_over_the_budget(make_cfg, given, epochs, steps):
    m = metrics_of(make_cfg, "max_epochs=null", given, "~callbacks.early_stopping")
    assert m["steps"] == steps and m["budget"]["why"].startswith("given: ")
    assert m["epochs"] == epochs or m["stopped_by"] == "max_steps"


# ---- what the user types wins: Lightning's own trainer.* length keys ------------------------------
# 128 training rows at 16 a step: 8 steps an epoch; budget.min_steps=30: 4 epochs when open
BUDGET = ["max_epochs=null", "budget.min_steps=30", "~callbacks.early_stopping",
          "budget.trust_val_rows=0"]  # (the 16 validation rows carved, as each key asks)


@pytest.mark.parametrize("given, epochs, steps, interval", [
    ("trainer.max_epochs=2", 2, 16, 1.0),  # was replaced by the budget's 4 epochs
    ("trainer.limit_train_batches=3", 10, 30, 1.0),  # the budget plans 3-batch epochs
    ("trainer.val_check_interval=4", 4, 32, 4),
    ("trainer.check_val_every_n_epoch=2", 4, 32, 1.0),
    ("trainer.max_time=00:01:00:00", 4, 32, 1.0),  # a hard stop; the budget still plans
])
def test_a_trainer_length_key_the_user_sets_wins(make_cfg, given, epochs, steps, interval):
    m = metrics_of(make_cfg, *BUDGET, given)
    key, value = given.removeprefix("trainer.").split("=")
    assert str(m["budget"]["given"][key]) == value and key not in m["budget"]["chosen"]
    assert (m["epochs"], m["steps"], m["budget"]["val_check_interval"]) == (epochs, steps, interval)


def test_a_one_pass_budget_validates_inside_a_limited_epoch(make_cfg, tmp_path):
    """The budget's interval (4 batches) was longer than a 3-batch epoch: Lightning's traceback."""
    m = metrics_of(make_cfg, "max_epochs=null", "budget.min_steps=1", "budget.validations=2",
                   "trainer.limit_train_batches=3", "~callbacks.early_stopping",
                   "budget.trust_val_rows=0", "budget.one_pass.epochs=null")  # (one pass, as planned)
    assert m["budget"]["val_check_interval"] <= 3 and m["steps"] <= 3
    assert m["best_epoch"] is not None and (tmp_path / "run" / "checkpoints" / "best.ckpt").is_file()


def test_a_max_steps_shorter_than_an_epoch_still_validates_and_keeps_the_best(make_cfg, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    m = metrics_of(make_cfg, "max_epochs=null", "trainer.max_steps=5", "budget.validations=2",
                   "~callbacks.early_stopping")
    assert m["steps"] == 5 and m["budget"]["val_check_interval"] == 2
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    assert len(events.Scalars("val/acc")) >= 2  # (validated at the epoch's end only: never, before)
    assert (tmp_path / "run" / "checkpoints" / "best.ckpt").is_file()


def test_the_schedule_spans_the_chosen_budget(make_cfg, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    metrics_of(make_cfg, "max_epochs=null", "budget.min_steps=30", "~callbacks.early_stopping",
               "trainer.log_every_n_steps=1")
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    tag = "train/lr/decayed"  # the weight matrices' group
    lrs = [e.value for e in events.Scalars(tag)]
    # 144 rows (the 16 validation rows too few to carve train too): 4 epochs of 9 steps
    assert len(lrs) == 36 and max(lrs) == pytest.approx(3e-5)  # warmup to budget.small_data's lr ...
    assert lrs.index(max(lrs)) == 4 and lrs[-1] < 5e-6  # ... at 10% of 36 steps (rounded), then ~0


# ---- the learning rate follows the model ----------------------------------------------------------
@pytest.mark.parametrize("model, lr", [("minilm", 1e-4), ("bert_base", 3e-5), ("distilbert", 5e-5),
                                       ("roberta_base", 2e-5), ("xlm_roberta_base", 2e-5)])
def test_each_model_carries_its_lr(make_cfg, model, lr):
    assert make_cfg(f"model={model}").lr == lr
    assert make_cfg(f"model={model}", "lr=7e-6").lr == 7e-6  # the command line wins
    assert make_cfg(f"model={model}", "optimizer=sgd").optimizer.lr == lr


@pytest.mark.parametrize("model, lora_lr", [("minilm", 1e-3), ("bert_base", 5e-4), ("roberta_base", 5e-4)])
def test_lora_runs_default_to_the_models_lora_lr(make_cfg, model, lora_lr):
    assert make_cfg(f"model={model}", "model.peft=lora").lr == lora_lr
    assert make_cfg(f"model={model}", "model.peft=lora", "lr=7e-6").lr == 7e-6  # the command line wins
    assert make_cfg(f"model={model}", "model.peft=lora", "model.lora.lr=2e-3").optimizer.lr == 2e-3
    assert recommended_lr(make_cfg(f"model={model}", "model.peft=lora").model) == lora_lr  # (metrics.json)


def test_metrics_record_the_lr_and_its_source(make_cfg):
    m = metrics_of(make_cfg, "lr=3e-4")
    assert m["lr"] == {"value": 3e-4, "model_recommends": 1e-4}


# ---- precision=auto ------------------------------------------------------------------------------
@pytest.mark.parametrize("facts, expected", [
    ({"cpu_flags": ["avx512_bf16"]}, "bf16-mixed"),
    ({"cpu_flags": ["amx_bf16", "amx_tile"]}, "bf16-mixed"),
    ({"cpu_flags": []}, "32-true"),
    ({"cuda": "NVIDIA H100", "capability": (9, 0)}, "bf16-mixed"),
    ({"cuda": "Tesla T4", "capability": (7, 5)}, "32-true"),
])
def test_precision_auto_follows_the_hardware(facts, expected):
    precision, why = choose_precision("auto", facts)
    assert precision == expected and why
    assert choose_precision("32-true", facts) == ("32-true", "set in trainer.precision")


def test_16_mixed_off_cuda_is_bf16_mixed_as_lightning_makes_it():
    precision, why = choose_precision("16-mixed", {"cpu_flags": []})
    assert precision == "bf16-mixed" and "16-mixed" in why
    assert choose_precision("16-mixed", {"cuda": "Tesla T4", "capability": (7, 5)}) == (
        "16-mixed", "set in trainer.precision")


@pytest.mark.parametrize("precision, recorded", [("16-mixed", "bf16-mixed"), ("16-true", "16-true")])
def test_half_precision_runs_train_on_the_cpu(make_cfg, precision, recorded):
    # 16-mixed: Lightning's own bf16 plugin refused the fused step with clipping (a traceback);
    # 16-true: foreach AdamW in fp16 gave a NaN loss at step 1
    m = metrics_of(make_cfg, f"trainer.precision={precision}")
    assert m["status"] == "finished" and m["precision"]["value"] == recorded


def test_precision_auto_reaches_the_trainer(monkeypatch):
    from omegaconf import OmegaConf

    import bertlab.training.plugins as plugins

    cfg = OmegaConf.create({"precision": "auto", "accelerator": "cpu"})
    monkeypatch.setattr(plugins, "hardware", lambda cuda: {"cpu_flags": []})
    assert trainer_plugins(cfg)[1] == {"precision": "32-true"}
    monkeypatch.setattr(plugins, "hardware", lambda cuda: {"cpu_flags": ["avx512_bf16"]})
    found, replaced = trainer_plugins(cfg)
    assert replaced == {"precision": None} and isinstance(found[-1], plugins.BF16Mixed)


def test_a_run_records_its_precision(make_cfg, monkeypatch):
    import bertlab.training.trainer as trainer_module

    monkeypatch.setattr(trainer_module, "hardware", lambda cuda: {"cpu_flags": []})
    m = metrics_of(make_cfg, "trainer.precision=auto")
    assert m["precision"]["value"] == "32-true" and "no AVX-512 BF16" in m["precision"]["why"]


# ---- pooling=auto: mean on scarce labels --------------------------------------------------------
@pytest.mark.parametrize("model, rows, expected", [
    ({"pooling": "auto", "auto_mean_rows": 1500}, 450, "mean"),
    ({"pooling": "auto", "auto_mean_rows": 1500}, 1499, "mean"),
    ({"pooling": "auto", "auto_mean_rows": 1500}, 1500, "cls"),
    ({"pooling": "auto", "auto_mean_rows": 1500}, 30_000, "cls"),
    ({"pooling": "auto", "auto_mean_rows": 1500, "peft": "lora"}, 450, "cls"),  # adapter exports
    ({"pooling": "auto", "auto_mean_rows": 0}, 10, "cls"),
    ({"pooling": "cls", "auto_mean_rows": 1500}, 10, "cls"),     # given wins
    ({"pooling": "mean", "auto_mean_rows": 1500}, 10**6, "mean"),
])
def test_pooling_auto_follows_the_row_count(model, rows, expected):
    pooling, why = choose_pooling(model, rows)
    assert pooling == expected
    assert why == "given" if model["pooling"] != "auto" else why.startswith("auto: ")


def test_pooling_auto_is_minilms_default_and_its_threshold_is_checked(make_cfg):
    minilm = make_cfg("model=minilm").model
    assert (minilm.pooling, minilm.auto_mean_rows) == ("auto", 1500)
    assert make_cfg().model.pooling == "cls"  # tiny: random weights, no pretrained sentence vector
    with pytest.raises(ConfigError, match=r"^model.auto_mean_rows='many' is not valid; use a row "
                                          r"count >= 0 \(pooling=auto reads mean below it\)$"):
        choose_pooling({"pooling": "auto", "auto_mean_rows": "many"}, 10)


def test_a_run_records_and_builds_the_pooling_auto_chose(make_cfg, tmp_path):
    m = metrics_of(make_cfg, "model.pooling=auto", "model.auto_mean_rows=1000")
    assert m["pooling"] == {"value": "mean", "why": "auto: 128 training rows (under 1000): the "
                                                    "mean of the token outputs", "normalize": False,
                            "normalize_why": "auto: random weights (pretrained=false) give no "
                                             "sentence vector"}
    hp = torch.load(tmp_path / "run" / "checkpoints" / "best.ckpt", weights_only=True)["hyper_parameters"]
    assert hp["model"]["pooling"] == "mean"  # concrete: eval, predict and export rebuild it as trained


# ---- the monitored metric follows the task ------------------------------------------------------
def test_monitor_auto_follows_the_task():
    assert resolve_monitor("auto", "auto", "classification") == ("val/acc", "max")
    assert resolve_monitor("auto", "auto", "multilabel") == ("val/f1", "max")
    assert resolve_monitor("auto", "auto", "regression") == ("val/loss", "min")
    assert resolve_monitor("val/pearson", "auto", "regression") == ("val/pearson", "max")
    assert resolve_monitor("val/loss", "max", "classification") == ("val/loss", "max")  # given
    with pytest.raises(ConfigError, match=r"monitor=val/accc is not a metric .* val/acc, val/f1"):
        resolve_monitor("val/accc", "auto", "classification")
    with pytest.raises(ConfigError, match="monitor=val/acc is not a metric of this regression"):
        resolve_monitor("val/acc", "auto", "regression")


# ---- k-fold cross-validation --------------------------------------------------------------------
def test_folds_are_disjoint_stratified_and_cover_the_rows():
    import datasets

    from bertlab.data.labels import fold

    labels = [0] * 30 + [1] * 15
    ds = datasets.Dataset.from_dict({"i": list(range(45)), "labels": labels}).cast_column(
        "labels", datasets.ClassLabel(names=["a", "b"]))
    seen = []
    for k in range(5):
        train_part, val = fold(ds, 5, k, "classification", seed=0)
        assert not set(train_part["i"]) & set(val["i"])
        assert len(train_part) + len(val) == 45
        assert sorted(val["labels"]) == [0] * 6 + [1] * 3  # the class ratio in every fold
        seen += val["i"]
    assert sorted(seen) == list(range(45))
    regression = datasets.Dataset.from_dict({"i": list(range(10)), "labels": [0.5] * 10})
    assert sorted(i for k in range(3) for i in fold(regression, 3, k, "regression", 0)[1]["i"]) \
        == list(range(10))
    with pytest.raises(ConfigError, match=r"cv=16 is more than the 15 training rows of the "
                                          r"smallest class \('b'\); use cv=15 or fewer"):
        fold(ds, 16, 0, "classification", seed=0)


def test_cross_validation_runs_folds_and_averages_their_predictions(make_cfg, tmp_path):
    from bertlab.models.scoring import collect
    from bertlab.data.datamodule import from_config
    from bertlab.models.checkpoints import load_model

    cfg = make_cfg(*FAST, "cv=3")
    train(cfg)
    run = tmp_path / "run"
    m = json.loads((run / "metrics.json").read_text())
    folds = [json.loads((run / f"fold_{i}" / "metrics.json").read_text()) for i in range(3)]
    assert m["cv"]["runs"] == ["fold_0", "fold_1", "fold_2"] and len(m["folds"]) == 3
    for key in ("val/acc", "test/acc"):
        assert m["mean"][key] == pytest.approx(statistics.fmean(f[key] for f in folds))
        assert m["std"][key] == pytest.approx(statistics.stdev(f[key] for f in folds))
    # every fold validated on its own third; train + validation cover the same 144 rows
    rows = [f["data"]["rows"] for f in folds]
    assert all(r["test"] == 16 and r["train"] + r["validation"] == 144 for r in rows)
    assert sum(r["validation"] for r in rows) == 144
    # the ensemble: the three best models' probabilities averaged on the shared test split
    dm = from_config(make_cfg(*FAST, "cv=3", "cv_fold=0"))
    dm.setup("test")
    loader = dm.eval_dataloader("test")
    probs = [collect(load_model(run / f"fold_{i}" / "checkpoints" / "best.ckpt"), loader)
             for i in range(3)]
    mean = sum(p for p, _ in probs) / 3
    acc = (mean.argmax(-1) == probs[0][1]).float().mean().item()
    assert m["ensemble_test/acc"] == pytest.approx(acc)
    table = (run / "cv.md").read_text()
    assert "| mean ± std |" in table and "averaged predictions" in table
    assert math.isfinite(m["mean"]["val/loss"]) and m["wall_seconds"] > 0


def test_a_fold_is_a_run_folder_that_eval_accepts(make_cfg, tmp_path):
    from hydra import compose, initialize_config_dir

    from bertlab.use.evaluate import evaluate
    from conftest import CONF

    train(make_cfg(*FAST, "cv=2"))
    fold = tmp_path / "run" / "fold_1"
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("eval", overrides=[f"run_dir={fold}", f"output_dir={tmp_path / 'eval'}",
                                         "split=validation"])
    (tmp_path / "eval").mkdir()
    result = evaluate(cfg)
    recorded = json.loads((fold / "metrics.json").read_text())
    assert result["validation/acc"] == pytest.approx(recorded["val/acc"], abs=1e-6)
    with initialize_config_dir(str(CONF), version_base="1.3"):  # the parent holds no model
        cfg = compose("eval", overrides=[f"run_dir={fold.parent}", f"output_dir={tmp_path / 'e2'}"])
    with pytest.raises(ConfigError, match=r"is a cross-validation run; its models are in its folds: "
                                          r"run_dir=.*/run/fold_0 \(to fold_1\)$"):
        evaluate(cfg)


@pytest.mark.parametrize("bad, words", [("cv=1", "cv=1 is not valid; use a number of folds >= 2"),
                                        ("cv=true", "cv=True is not valid"),
                                        ("cv_fold=0", "cv_fold=0 is not valid")])
def test_bad_cv_values_are_refused(make_cfg, bad, words):
    with pytest.raises(ConfigError, match=words):
        train(make_cfg(*FAST, bad))


def test_regression_cv_is_a_random_partition(make_cfg, tmp_path):
    train(make_cfg("data=valence", "data.max_samples=120", "batch_size=16", "cv=2"))
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert m["cv"]["stratified"] is False and "ensemble_test/pearson" in m
    assert torch.isfinite(torch.tensor(m["mean"]["val/pearson"]))
