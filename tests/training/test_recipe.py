"""The fine-tuning recipe: schedules, layer decay, freezing, L1, class weights, focal, precision."""
from __future__ import annotations

import json

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from bertlab.errors import ConfigError
from bertlab.models.losses import FocalLoss, class_weights
from bertlab.training.results import diagnose
from bertlab.training.train import train

FAST = ["data.max_samples=160", "batch_size=16"]  # 128 training rows: 8 steps an epoch


def run(make_cfg, tmp_path, *overrides) -> dict:
    train(make_cfg(*FAST, *overrides))
    return json.loads((tmp_path / "run" / "metrics.json").read_text())


def lr_curve(tmp_path) -> list[float]:
    acc = EventAccumulator(str(tmp_path / "run" / "tensorboard")).Reload()
    return [e.value for e in acc.Scalars("train/lr/decayed")]


def test_linear_schedule_warms_up_then_decays(make_cfg, tmp_path):
    run(make_cfg, tmp_path, "lr=5e-5", "max_epochs=2", "scheduler.warmup=4",
        "trainer.log_every_n_steps=1",
        "~callbacks.early_stopping")
    lrs = lr_curve(tmp_path)  # 16 steps: up for 4, then down towards 0
    assert lrs[0] == 0.0 and max(lrs) == pytest.approx(5e-5) and lrs.index(max(lrs)) == 4
    assert all(a > b for a, b in zip(lrs[4:], lrs[5:])) and lrs[-1] < 5e-5 / 10


def test_step_and_exponential_decay_per_epoch(make_cfg, tmp_path):
    run(make_cfg, tmp_path, "lr=5e-5", "scheduler=step", "scheduler.schedule.gamma=0.5", "max_epochs=3",
        "trainer.log_every_n_steps=1", "~callbacks.early_stopping")
    assert sorted(set(round(x, 12) for x in lr_curve(tmp_path))) == pytest.approx(
        [1.25e-5, 2.5e-5, 5e-5])


def test_exponential_decay_per_step(make_cfg, tmp_path):
    run(make_cfg, tmp_path, "lr=5e-5", "scheduler=exponential", "scheduler.schedule.gamma=0.9",
        "scheduler.interval=step", "trainer.log_every_n_steps=1")
    lrs = lr_curve(tmp_path)
    assert lrs[:3] == pytest.approx([5e-5, 4.5e-5, 4.05e-5])


def test_plateau_schedule_runs(make_cfg, tmp_path):
    metrics = run(make_cfg, tmp_path, "scheduler=plateau", "max_epochs=2")
    assert metrics["epochs"] == 2


def test_warmup_as_a_fraction_of_all_steps(make_cfg, tmp_path):
    run(make_cfg, tmp_path, "lr=5e-5", "scheduler=constant", "scheduler.warmup=0.5",
        "trainer.log_every_n_steps=1")
    lrs = lr_curve(tmp_path)  # 8 steps, 4 of warmup
    assert lrs[:5] == pytest.approx([0, 1.25e-5, 2.5e-5, 3.75e-5, 5e-5])
    assert lrs[-1] == pytest.approx(5e-5)


def test_layer_decay_scales_lr_by_depth(make_cfg, tmp_path):
    run(make_cfg, tmp_path, "layer_decay=0.5", "lr=1e-3", "trainer.log_every_n_steps=1")
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=False)
    initial = sorted({g["initial_lr"] for g in ckpt["optimizer_states"][0]["param_groups"]})
    # tiny has 2 layers: embeddings x0.125, layer 0 x0.25, layer 1 x0.5, head x1
    assert initial == pytest.approx([1.25e-4, 2.5e-4, 5e-4, 1e-3])
    names = {g["name"]: g["initial_lr"] for g in ckpt["optimizer_states"][0]["param_groups"]}
    assert names["embeddings_decayed"] == pytest.approx(1.25e-4) and names["head_no_decay"] == 1e-3
    tags = EventAccumulator(str(tmp_path / "run" / "tensorboard")).Reload().Tags()["scalars"]
    assert {"train/lr/layer_0_decayed", "train/lr/layer_1_no_decay"} <= set(tags)


@pytest.mark.parametrize("overrides, frozen_prefixes", [
    (["model.freeze_embeddings=true"], ["net.bert.embeddings."]),
    (["model.freeze_layers=1"], ["net.bert.embeddings.", "net.bert.encoder.layer.0."]),
    (["model.freeze_encoder=true"], ["net.bert."]),
])
def test_frozen_parameters_do_not_change(make_cfg, tmp_path, overrides, frozen_prefixes):
    metrics = run(make_cfg, tmp_path, *overrides, "lr=1e-3")
    assert metrics["parameters"]["trainable_at_start"] < metrics["parameters"]["total"]
    trained = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=False)
    initial = initial_weights(make_cfg)
    for name, value in trained["state_dict"].items():
        if name.startswith("net."):
            frozen = any(name.startswith(p) for p in frozen_prefixes) and "pooler" not in name
            assert torch.equal(value, initial[name]) == frozen, name


def initial_weights(make_cfg) -> dict:
    """The tiny model's weights before training, built as train() builds it (same seed)."""
    import lightning as L
    from omegaconf import OmegaConf

    from bertlab.models.classifier import TextClassifier

    cfg = make_cfg(*FAST)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    plain = lambda n: OmegaConf.to_container(n, resolve=True)  # noqa: E731
    model = TextClassifier(model=plain(cfg.model), task="classification",
                           labels=["negative", "neutral", "positive"], loss=plain(cfg.loss),
                           optimizer=plain(cfg.optimizer), scheduler=plain(cfg.scheduler))
    return model.state_dict()


def test_unfreeze_at_epoch(make_cfg, tmp_path):
    run(make_cfg, tmp_path, "model.freeze_encoder=true", "model.unfreeze_at_epoch=1",
        "max_epochs=2", "lr=1e-3", "~callbacks.early_stopping")
    trained = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=False)
    initial = initial_weights(make_cfg)
    name = "net.bert.encoder.layer.0.attention.self.query.weight"
    assert not torch.equal(trained["state_dict"][name], initial[name])  # trained in epoch 1
    assert len(trained["optimizer_states"][0]["param_groups"]) == 3  # head x2 + unfrozen


def test_l1_is_added_to_the_loss_and_logged(make_cfg, tmp_path):
    run(make_cfg, tmp_path, "regularization.l1=1e-6", "trainer.log_every_n_steps=1")
    acc = EventAccumulator(str(tmp_path / "run" / "tensorboard")).Reload()
    l1 = [e.value for e in acc.Scalars("train/l1")]
    assert len(l1) == 8 and all(v > 100 for v in l1)


def detached_model(cfg, task: str = "classification", **kwargs):
    """The tiny classifier of `cfg` (seed 0) with no trainer attached (its logging a no-op)."""
    import lightning as L
    from omegaconf import OmegaConf

    from bertlab.models.classifier import TextClassifier

    plain = lambda n: OmegaConf.to_container(n, resolve=True)  # noqa: E731
    L.seed_everything(0, verbose=False)
    model = TextClassifier(model=plain(cfg.model), task=task, labels=["a", "b"], loss=plain(cfg.loss),
                           optimizer=plain(cfg.optimizer), scheduler=plain(cfg.scheduler), **kwargs)
    model.log = lambda *a, **k: None
    model.log_dict = lambda *a, **k: None
    return model


def test_l1_is_added_to_the_training_loss(make_cfg):
    cfg = make_cfg(*FAST)
    losses = []
    for l1 in (0.0, 1e-3):
        model = detached_model(cfg, l1=l1).eval()
        batch = {"input_ids": torch.tensor([[101, 2307, 102]]),
                 "attention_mask": torch.ones(1, 3, dtype=torch.long),
                 "labels": torch.tensor([1])}
        losses.append(float(model.training_step(batch, 0)))
    weights = sum(p.abs().sum() for p in model.parameters() if p.ndim >= 2)
    assert losses[1] - losses[0] == pytest.approx(1e-3 * float(weights), rel=1e-4)


def test_rdrop_gap_is_each_task_s_symmetric_divergence():
    """regularization.rdrop's term: the symmetric KL of the class distributions (of each label's
    Bernoulli, multi-label), the mean squared difference for regression; 0 for equal outputs."""
    from torch.distributions import Bernoulli, Categorical, kl_divergence

    from bertlab.models.losses import consistency_loss
    from bertlab.task import task_of

    torch.manual_seed(0)
    a, b = torch.randn(5, 3), torch.randn(5, 3)
    kl = lambda p, q: kl_divergence(p, q).mean()  # noqa: E731
    cls, multi, reg = (task_of(t) for t in ("classification", "multilabel", "regression"))
    p, q = Categorical(logits=a), Categorical(logits=b)
    assert float(consistency_loss(cls, a, b)) == pytest.approx(float(0.5 * (kl(p, q) + kl(q, p))))
    assert float(consistency_loss(multi, a, b)) == pytest.approx(float(0.5 * (
        kl_divergence(Bernoulli(logits=a), Bernoulli(logits=b)).sum(-1).mean()
        + kl_divergence(Bernoulli(logits=b), Bernoulli(logits=a)).sum(-1).mean())), rel=1e-5)
    assert float(consistency_loss(reg, a[:, 0], b[:, 0])) == pytest.approx(float(((a - b)[:, 0] ** 2).mean()))
    for task in (cls, multi, reg):
        assert float(consistency_loss(task, a, a)) == pytest.approx(0.0, abs=1e-6)
        assert float(consistency_loss(task, a, b)) == pytest.approx(float(consistency_loss(task, b, a)))


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_rdrop_trains_on_two_dropout_passes_and_their_gap(make_cfg, task):
    """The training loss with rdrop=alpha is the mean of two passes' losses (two dropout masks)
    plus alpha x their gap; rdrop=0 is one pass; validation is one pass either way."""
    from bertlab.models.losses import consistency_loss

    cfg = make_cfg(*FAST)
    labels = torch.tensor([1, 0]) if task == "classification" else torch.tensor([0.3, -1.2])
    model = lambda rdrop: detached_model(cfg, task, rdrop=rdrop)  # noqa: E731

    def batch(inputs_only=False):
        b = {"input_ids": torch.tensor([[101, 2307, 2003, 102], [101, 2919, 102, 0]]),
             "attention_mask": torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]]), "labels": labels.clone()}
        return {k: v for k, v in b.items() if k != "labels"} if inputs_only else b

    one = model(0.0)
    torch.manual_seed(1)
    single = float(one.training_step(batch(), 0))
    torch.manual_seed(1)  # the same two dropout masks, by hand
    first, second = one(**batch(True)), one(**batch(True))
    ce = lambda out: float(one.loss_fn(*one.task.loss_inputs(out, labels)))  # noqa: E731
    assert single == pytest.approx(ce(first), rel=1e-5)
    gap = float(consistency_loss(one.task, first, second))
    assert gap > 0  # two masks, two answers
    for alpha in (1.0, 4.0):
        twice = model(alpha)
        torch.manual_seed(1)
        got = float(twice.training_step(batch(), 0))
        assert got == pytest.approx(0.5 * (ce(first) + ce(second)) + alpha * gap, rel=1e-5)
    twice.eval()  # no dropout: the two passes agree, and the loss is one pass's
    assert float(twice.training_step(batch(), 0)) == pytest.approx(ce(twice(**batch(True))), rel=1e-5)
    calls, forward = [], twice.forward
    twice.forward = lambda **k: calls.append(1) or forward(**k)
    twice.validation_step(batch(), 0)
    assert len(calls) == 1


def test_an_rdrop_run_logs_its_gap_and_resumes_to_the_same_metrics(make_cfg, tmp_path):
    from conftest import stopped_and_resumed

    expected, got = stopped_and_resumed(make_cfg, tmp_path, [
        "data.max_samples=200", "batch_size=16", "lr=2e-3", "regularization.rdrop=1",
        "scheduler=constant", "trainer.deterministic=true", "trainer.log_every_n_steps=1"])
    for key in ("val/loss", "val/acc", "test/loss", "test/acc"):
        assert got[key] == pytest.approx(expected[key], abs=1e-6), key
    acc = EventAccumulator(str(tmp_path / "b" / "tensorboard")).Reload()
    gaps = [e.value for e in acc.Scalars("train/rdrop")]
    assert len(gaps) == 20 and all(v > 0 for v in gaps)


def test_rdrop_mistakes_are_one_line(make_cfg):
    from bertlab.cli.checks import check_ranges

    with pytest.raises(ConfigError, match=r"regularization.rdrop=-1 is not valid; use a number >= 0"):
        check_ranges(make_cfg("regularization.rdrop=-1"))


def test_balanced_class_weights_reach_the_loss(make_cfg, tmp_path):
    metrics = run(make_cfg, tmp_path, "loss=cross_entropy", "class_weights=balanced")
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "best.ckpt", weights_only=True)
    counts = ckpt["hyper_parameters"]["class_counts"]
    weight = ckpt["state_dict"]["loss_fn.weight"]
    assert weight.tolist() == pytest.approx([sum(counts) / (3 * c) for c in counts])
    assert metrics["loss"]["class_weights"] == pytest.approx(weight.tolist(), abs=1e-4)
    assert class_weights([1, 2, 3], [5, 5, 5]).tolist() == [1, 2, 3]
    with pytest.raises(ConfigError, match="use balanced or a list of 3 numbers"):
        class_weights([1, 2], [5, 5, 5])


def test_focal_loss(make_cfg, tmp_path):
    logits, target = torch.randn(6, 3), torch.tensor([0, 1, 2, 0, 1, 2])
    ce = torch.nn.functional.cross_entropy(logits, target)
    assert FocalLoss(gamma=0)(logits, target) == pytest.approx(float(ce))
    assert FocalLoss(gamma=2)(logits, target) < ce
    metrics = run(make_cfg, tmp_path, "loss=focal")
    assert metrics["val/acc"] >= 0


def test_label_smoothing_reaches_the_loss(make_cfg, tmp_path):
    run(make_cfg, tmp_path, "loss=cross_entropy", "loss.label_smoothing=0.1")
    from bertlab.models.checkpoints import load_model

    assert load_model(tmp_path / "run" / "checkpoints" / "best.ckpt").loss_fn.label_smoothing == 0.1


def test_bf16_mixed_precision_and_accumulation_on_cpu(make_cfg, tmp_path):
    metrics = run(make_cfg, tmp_path, "trainer.precision=bf16-mixed",
                  "trainer.accumulate_grad_batches=2")
    assert metrics["steps"] == 4 and metrics["val/loss"] == metrics["val/loss"]
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["optimizer_states"][0]["param_groups"][0]["fused"] is True  # and clipping is on
    assert make_cfg().trainer.gradient_clip_val == 1.0


def test_optimizer_implementation_by_precision():
    from bertlab.models.classifier import implementation

    adamw = {"_target_": "torch.optim.AdamW", "fused": None}
    assert implementation(dict(adamw), "32-true", 1.0) == {"fused": True}
    assert implementation(dict(adamw), "bf16-mixed", 1.0) == {"fused": True}
    assert implementation(dict(adamw), "16-mixed", 1.0) == {"foreach": True}  # scaled grads
    assert implementation(dict(adamw), "16-mixed", None) == {"fused": True}
    assert implementation(dict(adamw), "16-true", 1.0) == {"fused": True}  # no scaler; foreach: NaN
    assert implementation({**adamw, "fused": False}, "32-true", 1.0) == {"foreach": True}
    assert implementation({"_target_": "torch.optim.RMSprop"}, "32-true", 1.0) == {"foreach": True}


def test_early_stopping_records_why_and_the_best_epoch(make_cfg, tmp_path):
    metrics = run(make_cfg, tmp_path, "max_epochs=20", "monitor=val/loss",
                  "callbacks.early_stopping.patience=1",
                  "callbacks.early_stopping.min_delta=10")  # nothing improves by 10
    assert metrics["stopped_by"] == "early stopping" and metrics["epochs"] == 2
    acc = EventAccumulator(str(tmp_path / "run" / "tensorboard")).Reload()
    val_loss = [e.value for e in acc.Scalars("val/loss")][:2]  # epoch 0, epoch 1 (then re-test)
    assert metrics["best_epoch"] == val_loss.index(min(val_loss))


def test_fit_diagnosis():
    counts = [50, 50]
    assert diagnose({"train/acc": 0.99, "val/acc": 0.80}, "classification",
                    counts).startswith("overfitting: train acc 0.990, val acc 0.800")
    assert diagnose({"train/acc": 0.5, "val/acc": 0.51}, "classification",
                    counts).startswith("underfitting")
    assert diagnose({"train/acc": 0.85, "val/acc": 0.83}, "classification",
                    counts).startswith("no sign")
    assert diagnose({"train/mse": 0.1, "val/mse": 0.5, "val/pearson": 0.8},
                    "regression", None).startswith("overfitting")
    assert diagnose({"train/mse": 997.0, "val/mse": 915.0, "val/pearson": float("nan")},
                    "regression", None).startswith("underfitting")  # constant predictions


def test_lr_range_test_saves_a_plot_and_can_train_with_it(make_cfg, tmp_path):
    from bertlab.training.tune import tune_lr

    cfg = make_cfg(*FAST, "tune_lr.num_training=30", "tune_lr.apply=true")
    tune_lr(cfg)
    found = json.loads((tmp_path / "run" / "lr_find.json").read_text())
    assert (tmp_path / "run" / "lr_find.png").stat().st_size > 1000
    assert len(found["lr"]) <= 30 and 1e-7 <= found["suggestion"] <= 1
    config = (tmp_path / "run" / ".hydra" / "config.yaml").read_text()
    assert f"lr: {found['suggestion']}" in config  # trained with the suggestion
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["optimizer_states"][0]["param_groups"][0]["initial_lr"] == pytest.approx(
        found["suggestion"])
    acc = EventAccumulator(str(tmp_path / "run" / "tensorboard")).Reload()
    assert "tune/lr_find" in acc.Tags()["images"]


def test_lr_range_test_alone_reaches_the_trackers(make_cfg, tmp_path):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    from bertlab.training.tune import tune_lr

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    lr = tune_lr(make_cfg(*FAST, "tune_lr.num_training=20", "logger=[tensorboard,mlflow]",
                          f"logger.mlflow.tracking_uri={uri}",
                          f"logger.mlflow.artifact_location={tmp_path / 'artifacts'}"))
    client = MlflowClient(uri)
    (found,) = client.search_runs([client.get_experiment_by_name("bertlab").experiment_id])
    assert found.data.metrics["tune/suggested_lr"] == pytest.approx(lr)
    assert "lr_find.png" in {a.path for a in client.list_artifacts(found.info.run_id)}


def test_pruning_reaches_the_asked_sparsity(make_cfg, tmp_path):
    from bertlab.models.checkpoints import load_model

    metrics = run(make_cfg, tmp_path, "callbacks=pruning", "callbacks.pruning.sparsity=0.6",
                  "max_epochs=3", "~callbacks.early_stopping", "monitor=val/loss")
    report = metrics["pruning"]
    assert report["sparsity"] == pytest.approx(0.6, abs=0.01)
    assert report["before"]["val/loss"] > 0 and report["after"]["val/loss"] > 0
    model = load_model(tmp_path / "run" / "checkpoints" / "best.ckpt")  # a pruned model
    weights = [m.weight for layer in model.net.bert.encoder.layer for m in layer.modules()
               if isinstance(m, torch.nn.Linear)]
    zeros = sum(int((w == 0).sum()) for w in weights) / sum(w.numel() for w in weights)
    assert zeros == pytest.approx(0.6, abs=0.01)
    embeddings = model.net.bert.embeddings.word_embeddings.weight
    assert (embeddings == 0).float().mean() < 0.001  # not pruned (only the [PAD] row is 0)
    assert metrics["best_epoch"] == 2  # only pruned epochs compete
    acc = EventAccumulator(str(tmp_path / "run" / "tensorboard")).Reload()
    assert {"pruning/sparsity", "pruning/before", "pruning/after"} <= set(acc.Tags()["scalars"])


def test_pruning_needs_a_dense_epoch(make_cfg):
    with pytest.raises(ConfigError, match="do not fit in max_epochs=1"):
        train(make_cfg(*FAST, "callbacks=pruning"))


def test_shrink_writes_a_smaller_model_that_loads_and_predicts(make_cfg, tmp_path):
    from helpers import assert_quiet, cold_caches, tool

    run(make_cfg, tmp_path)
    quiet = cold_caches(tmp_path)  # (no library chatter: test_console.py)
    r = tool("shrink.py", f"run_dir={tmp_path / 'run'}", "int8=true", "drop_layers=1", env=quiet)
    assert_quiet(r)
    (out,) = (tmp_path / "run" / "shrink").iterdir()
    rows = json.loads((out / "shrink.json").read_text())
    assert rows["after"]["size_mb"] < rows["before"]["size_mb"]
    assert rows["after"]["parameters"] < rows["before"]["parameters"]
    assert "| before |" in r.stdout and "| after |" in r.stdout
    (tmp_path / "in.txt").write_text("great\nawful\n")
    r = tool("predict.py", f"ckpt_path={out / 'model.ckpt'}", f"input={tmp_path / 'in.txt'}",
             f"output={tmp_path / 'p.jsonl'}", env=quiet)
    assert_quiet(r)
    assert "wrote 2 predictions" in r.stdout + r.stderr
    assert len((tmp_path / "p.jsonl").read_text().splitlines()) == 2
    from bertlab.models.checkpoints import load_model

    small = load_model(out / "model.ckpt")
    assert len(small.net.bert.encoder.layer) == 1  # tiny has 2; the top one is gone


def test_divergence_stops_the_run_and_says_so(make_cfg, tmp_path):
    metrics = run(make_cfg, tmp_path, "optimizer=sgd", "lr=1e12", "trainer.gradient_clip_val=null",
                  "max_epochs=5")
    assert metrics["status"] == "diverged" and "training loss became nan" in metrics["stopped_by"]
    # stopped at the step itself, before its update; nothing trained on garbage is scored or saved
    assert metrics["epochs"] == 0 and 0 < metrics["steps"] < 8
    assert "val/loss" not in metrics and not (tmp_path / "run" / "checkpoints" / "best.ckpt").exists()


def test_dropout_rates_and_monitoring_accuracy(make_cfg, tmp_path):
    from bertlab.models.checkpoints import load_model

    metrics = run(make_cfg, tmp_path, "+model.config_overrides.hidden_dropout_prob=0.3",
                  "+model.config_overrides.classifier_dropout=0.4", "monitor=val/acc",
                  "mode=max", "max_epochs=2")
    model = load_model(tmp_path / "run" / "checkpoints" / "best.ckpt")
    assert model.net.config.hidden_dropout_prob == 0.3
    assert model.net.dropout.p == 0.4  # the head's dropout
    assert model.net.bert.encoder.layer[0].output.dropout.p == 0.3
    acc = EventAccumulator(str(tmp_path / "run" / "tensorboard")).Reload()
    val_acc = [e.value for e in acc.Scalars("val/acc")][:2]
    assert metrics["monitor"] == "val/acc" and metrics["best_epoch"] == val_acc.index(max(val_acc))


@pytest.mark.parametrize("overrides, expected", [
    ((), True),  # Lightning's default
    (("model.compile=true",), False),  # no_grad: the graph fit's validation built serves again
    (("model.compile=true", "+trainer.inference_mode=true"), True),  # what a user types wins
])
def test_compile_evaluates_under_no_grad_unless_the_user_says(make_cfg, overrides, expected):
    from bertlab.training.trainer import build_trainer

    trainer = build_trainer(make_cfg("~callbacks", "~logger", *overrides), {}, 0)  # (no run)
    assert trainer.test_loop.inference_mode is expected
    assert trainer.validate_loop.inference_mode is expected


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_compile_trains_the_compiled_network_and_keeps_plain_checkpoint_keys(make_cfg, tmp_path,
                                                                              pooling):
    from bertlab.models.checkpoints import load_model
    from bertlab.models.network import unwrapped

    def compiled(model):  # what logits() calls: the whole network, or (mean) its encoder
        return unwrapped(model.net).base_model if pooling == "mean" else model.net

    from torch._dynamo.utils import counters

    counters.clear()
    # one padded length and fp32: fewer graphs for Inductor to compile (a cold cache pays ~15 s each)
    metrics = run(make_cfg, tmp_path, "model.compile=true", "trainer.max_steps=2",
                  "data.pad_to_multiple_of=64", "trainer.precision=32-true", f"model.pooling={pooling}")
    assert metrics["steps"] == 2 and metrics["val/loss"] == metrics["val/loss"]
    # training's graph and one no_grad graph that validation, test and the scoring share (the
    # probe of head_init=auto runs eager; inference_mode would have compiled a third)
    assert counters["stats"]["unique_graphs"] == 2, dict(counters["stats"])
    model = load_model(tmp_path / "run" / "checkpoints" / "last.ckpt")  # keys as uncompiled
    assert compiled(model)._compiled_call_impl is not None  # compiled in place, as trained
    plain = type(model)(**{**model.hparams, "model": {**model.hparams.model, "compile": False}})
    plain.load_state_dict(model.state_dict())
    assert compiled(plain)._compiled_call_impl is None
    with torch.no_grad():  # as validation and scoring ran: a graph Inductor already built
        ids = torch.randint(5, 1000, (16, 64))
        assert torch.allclose(model.eval()(ids, torch.ones_like(ids)),
                              plain.eval()(ids, torch.ones_like(ids)), atol=1e-5)
