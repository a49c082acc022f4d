"""Training end to end on `model=tiny`: run folder contract, tasks, optimizers, TensorBoard."""
from __future__ import annotations

import json
import re
import math
import time

import pytest
import torch

from bertlab.errors import ConfigError, Unavailable
from bertlab.training.train import train

FAST = ["data.max_samples=160", "batch_size=16"]


def run(make_cfg, *overrides):
    cfg = make_cfg(*FAST, *overrides)
    train(cfg)
    return cfg.output_dir


def load_ckpt(path):
    return torch.load(path, map_location="cpu", weights_only=False)


def test_run_folder_contract(make_cfg, tmp_path):
    from omegaconf import OmegaConf

    run_dir = tmp_path / "run"
    cfg = make_cfg(*FAST, "max_epochs=2", run_dir=run_dir)
    composed = OmegaConf.to_yaml(cfg)
    train(cfg)
    assert OmegaConf.to_yaml(cfg) == composed  # the plan's decisions went into a copy
    config = (run_dir / ".hydra" / "config.yaml").read_text()
    assert "${" not in config and "lr: 0.0001" in config  # fully resolved
    recorded = OmegaConf.load(run_dir / ".hydra" / "config.yaml")  # with the plan's decisions
    assert (recorded.monitor, recorded.mode) == ("val/acc", "max") and recorded.trainer.precision != "auto"
    assert (run_dir / "checkpoints" / "best.ckpt").is_file()
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for key in ("val/loss", "val/acc", "val/f1", "test/loss", "test/acc", "test/f1"):
        assert math.isfinite(metrics[key]), key
    assert metrics["status"] == "finished" and metrics["epochs"] == 2
    assert metrics["best_checkpoint"] == "checkpoints/best.ckpt"
    prov = json.loads((run_dir / "provenance.json").read_text())
    assert prov["versions"]["torch"] == torch.__version__ and prov["versions"]["bertlab"]
    assert len(prov["git"]["commit"]) == 40 and isinstance(prov["git"]["dirty"], bool)


def test_label_map_round_trips_through_the_checkpoint(make_cfg, tmp_path):
    run(make_cfg)
    labels = json.loads((tmp_path / "run" / "labels.json").read_text())
    assert labels == {"0": "negative", "1": "neutral", "2": "positive"}
    hp = load_ckpt(tmp_path / "run" / "checkpoints" / "best.ckpt")["hyper_parameters"]
    assert hp["labels"] == [labels[str(i)] for i in range(len(labels))]
    assert hp["task"] == "classification" and hp["max_length"] == 128
    assert hp["clean"][0] == "fix_text" and hp["model"]["name_or_path"].endswith("model")


def test_checkpoint_alone_rebuilds_the_model(make_cfg, tmp_path):
    from bertlab.models.classifier import TextClassifier

    run(make_cfg)
    model = TextClassifier.load_from_checkpoint(tmp_path / "run" / "checkpoints" / "best.ckpt",
                                                map_location="cpu", weights_only=False)
    ids = torch.tensor([[101, 2307, 102]])
    assert model.eval()(ids, torch.ones_like(ids)).shape == (1, 3)


@pytest.mark.parametrize("name, cls, key", [
    ("adamw", "AdamW", "decoupled_weight_decay"), ("adam", "Adam", "amsgrad"),
    ("sgd", "SGD", "nesterov"), ("rmsprop", "RMSprop", "centered")])
def test_each_optimizer_reads_top_level_lr(make_cfg, tmp_path, name, cls, key):
    run(make_cfg, f"optimizer={name}", "lr=3e-4", "weight_decay=0.05")
    ckpt = load_ckpt(tmp_path / "run" / "checkpoints" / "last.ckpt")
    groups = ckpt["optimizer_states"][0]["param_groups"]
    assert key in groups[0]
    assert groups[0]["initial_lr"] == pytest.approx(3e-4)
    assert [g["weight_decay"] for g in groups] == [0.05, 0.0]  # none on biases and LayerNorm
    if name == "adam":
        assert not groups[0].get("decoupled_weight_decay", False)  # really Adam, not AdamW
    # one fused kernel where torch has one, else foreach: never torch's CPU default (a loop)
    assert groups[0].get("fused") is True if name != "rmsprop" else groups[0]["foreach"] is True


def test_regression_on_the_valence_lexicon(make_cfg, tmp_path, recwarn):
    run(make_cfg, "data=valence")
    noise = ("will save all targets", "LeafSpec", "not supported by the model summary")
    assert not [w for w in recwarn if any(n in str(w.message) for n in noise)]  # log lines for no one
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["task"] == "regression"
    for key in ("val/mse", "val/mae", "val/pearson", "val/spearman", "test/mse"):
        assert key in metrics and not math.isnan(metrics[key]), key
    assert not (tmp_path / "run" / "labels.json").exists()
    hp = load_ckpt(tmp_path / "run" / "checkpoints" / "best.ckpt")["hyper_parameters"]
    assert hp["task"] == "regression"


def test_regression_trains_alike_in_any_units(make_cfg, files, tmp_path):
    """The head learns (y - mean) / std of the training targets, so targets in other units
    (a + b * y: a 0-100 score instead of -4..4) train the same run, and the values come back in
    the label's units. (Raw targets far from 0 once left the head predicting a constant.)"""
    import random

    rnd = random.Random(0)
    y = [round(rnd.uniform(-4, 4), 2) for _ in range(120)]
    scores = {}
    for name, labels in (("unit", y), ("score", [round(50 + 10 * v, 2) for v in y])):
        path = files(f"{name}.csv", 120, label=labels)
        cfg = make_cfg("data=files", f"data.train_file={path}", "trainer.precision=32-true",
                       "max_epochs=2", "batch_size=16", run_dir=tmp_path / name)
        train(cfg)
        scores[name] = json.loads((tmp_path / name / "metrics.json").read_text())
    unit, score = scores["unit"], scores["score"]
    mean, std = score["loss"]["target_mean_std"]
    assert mean == pytest.approx(50 + 10 * unit["loss"]["target_mean_std"][0], rel=1e-5)
    assert std == pytest.approx(10 * unit["loss"]["target_mean_std"][1], rel=1e-5)
    assert score["test/pearson"] == pytest.approx(unit["test/pearson"], abs=1e-3)
    assert score["test/mae"] == pytest.approx(10 * unit["test/mae"], rel=1e-3)
    assert score["val/loss"] == pytest.approx(unit["val/loss"], rel=1e-3)  # standardized units


def test_a_resumed_regression_run_keeps_the_scale_it_began_with(make_cfg, tmp_path):
    """A run begun before bertlab standardized regression targets (its checkpoint has no scale)
    resumes with the raw head it was training, not with a scale its weights never learnt."""
    from bertlab.training.train import fit_and_report

    run_dir = tmp_path / "run"
    run(make_cfg, "data=valence")
    last = run_dir / "checkpoints" / "last.ckpt"
    ckpt = load_ckpt(last)
    assert ckpt["hyper_parameters"]["target_scale"][1] > 1  # valence: std ~1.5
    del ckpt["hyper_parameters"]["target_scale"]  # as an older bertlab wrote it
    torch.save(ckpt, last)
    fit_and_report(make_cfg(*FAST, "data=valence", "max_epochs=2"), run_dir, last,
                   ckpt["global_step"], time.time())
    assert load_ckpt(last)["hyper_parameters"]["target_scale"] is None
    assert json.loads((run_dir / "metrics.json").read_text())["epochs"] == 2


def test_a_resumed_run_keeps_the_pooling_it_began_with(make_cfg, tmp_path):
    """A run begun with a [CLS] head (before pooling=auto, or above its row count) resumes with
    that head even where pooling=auto would now choose mean: its weights fit the head it had."""
    from bertlab.training.train import fit_and_report

    run_dir = tmp_path / "run"
    run(make_cfg)
    last = run_dir / "checkpoints" / "last.ckpt"
    ckpt = load_ckpt(last)
    assert ckpt["hyper_parameters"]["model"]["pooling"] == "cls"
    fit_and_report(make_cfg(*FAST, "max_epochs=2", "model.pooling=auto", "model.auto_mean_rows=100000"),
                   run_dir, last, ckpt["global_step"], time.time())
    assert load_ckpt(last)["hyper_parameters"]["model"]["pooling"] == "cls"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["epochs"] == 2 and metrics["pooling"]["value"] == "cls"


def test_multilabel_from_jsonl(make_cfg, files, tmp_path):
    tags = [[["a"], ["b"], ["a", "c"]][i % 3] for i in range(90)]
    path = files("t.jsonl", 90, label=tags)
    run(make_cfg, "data=files", f"data.train_file={path}")
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["task"] == "multilabel" and 0 <= metrics["val/f1"] <= 1
    assert json.loads((tmp_path / "run" / "labels.json").read_text()) == {
        "0": "a", "1": "b", "2": "c"}


@pytest.mark.parametrize("loss, task_data, ok", [
    ("mse", "data=valence", True), ("huber", "data=valence", True),
    ("cross_entropy", "data=valence", False), ("mse", "data=tweets", False)])
def test_loss_must_fit_the_task(make_cfg, loss, task_data, ok):
    if ok:
        run(make_cfg, task_data, f"loss={loss}")
    else:
        with pytest.raises(ConfigError, match="does not fit a .* task; use loss=auto"):
            run(make_cfg, task_data, f"loss={loss}")


@pytest.mark.parametrize("override, words", [
    ("lr=0", "lr=0 is not valid"), ("lr=-1e-5", "lr=-1e-05 is not valid"),
    ("batch_size=0", "batch_size=0 is not valid"), ("batch_size=2.5", "batch_size=2.5"),
    ("mode=up", "mode='up' is not valid; use min, max or auto"),
    ("budget.trust_val_rows=-1", "budget.trust_val_rows=-1 is not valid; use an integer >= 0"),
    ("budget.trust_val_rows=0.5", "budget.trust_val_rows=0.5 is not valid")])
def test_bad_numbers(make_cfg, override, words):
    with pytest.raises(ConfigError, match=words.replace("(", r"\(")):
        run(make_cfg, override)


def test_a_used_run_folder_is_never_reused(make_cfg, tmp_path):
    run(make_cfg)
    before = (tmp_path / "run" / "metrics.json").read_text()
    with pytest.raises(ConfigError, match="already holds a run"):
        run(make_cfg)
    assert (tmp_path / "run" / "metrics.json").read_text() == before


@pytest.mark.parametrize("env, first", [
    ({}, True), ({"LOCAL_RANK": "1"}, False), ({"NODE_RANK": "1", "LOCAL_RANK": "0"}, False),
    ({"RANK": "5"}, False), ({"SLURM_NTASKS": "8", "SLURM_PROCID": "3"}, False),
    ({"SLURM_NTASKS": "8", "SLURM_PROCID": "0"}, True), ({"SLURM_NTASKS": "1", "SLURM_PROCID": "2"}, True),
])
def test_only_the_first_process_of_a_run_claims_and_records(monkeypatch, tmp_path, env, first):
    """DDP over nodes (NODE_RANK, torchrun's RANK) or SLURM tasks (one per GPU): every process
    runs train.py on the same folder; the first claims it and writes its records, the rest do not
    (and are not refused because the first did). One SLURM task alone (an array job) is first."""
    from omegaconf import OmegaConf

    from bertlab.cli import runs

    for key in ("LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "RANK", "SLURM_NTASKS", "SLURM_PROCID"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert runs.first_process() is first
    run = tmp_path / "run"
    run.mkdir()
    (run / runs.CLAIM).write_text("another process")  # the first process's claim
    if first:
        with pytest.raises(ConfigError, match="already holds a run"):
            runs.claim_run_dir(run)
    else:
        runs.claim_run_dir(run)  # not refused
        runs.write_records(run, OmegaConf.create({"lr": 1}), None)
        assert sorted(p.name for p in run.iterdir()) == [runs.CLAIM]  # nothing written


def test_tensorboard_has_curves_lr_and_hparams(make_cfg, tmp_path):
    from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer
    from tensorboard.plugins.hparams import plugin_data_pb2

    run(make_cfg, "optimizer=adam", "max_epochs=2")
    mux = EventMultiplexer({"run": str(tmp_path / "run" / "tensorboard")}).Reload()
    tags = mux.Runs()["run"]["scalars"]
    for tag in ("train/loss_step", "val/loss", "val/acc", "val/f1", "test/acc"):
        assert tag in tags, tag
    assert {"train/lr/decayed", "train/lr/no_decay"} <= set(tags)  # named by what they hold
    assert "epoch" not in tags  # the first cards are loss and metrics
    content = mux.PluginRunToTagToContent("hparams")["run"]
    start = next(plugin_data_pb2.HParamsPluginData.FromString(c).session_start_info
                 for c in content.values()
                 if plugin_data_pb2.HParamsPluginData.FromString(c).HasField("session_start_info"))
    assert start.hparams["optimizer"].string_value == "Adam"
    assert start.hparams["lr"].number_value == pytest.approx(1e-4)
    experiment = next(plugin_data_pb2.HParamsPluginData.FromString(c).experiment
                      for c in content.values()
                      if plugin_data_pb2.HParamsPluginData.FromString(c).HasField("experiment"))
    assert {"val/acc", "test/acc"} <= {m.name.tag for m in experiment.metric_infos}


def test_tensorboard_custom_scalars_put_train_and_val_on_one_chart(make_cfg, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.custom_scalar import layout_pb2

    run(make_cfg, "max_epochs=1")
    acc = EventAccumulator(str(tmp_path / "run" / "tensorboard"),
                           size_guidance={"tensors": 0}).Reload()
    (event,) = acc.Tensors("custom_scalars__config__")
    layout = layout_pb2.Layout.FromString(event.tensor_proto.string_val[0])
    charts = {c.title: list(c.multiline.tag) for cat in layout.category for c in cat.chart}
    assert list(charts)[:3] == ["loss", "acc", "f1"]
    assert charts["loss"] == ["^train/loss(_epoch)?$", "^val/loss$"]
    tags = acc.Tags()["scalars"]
    for pattern in charts["loss"] + charts["acc"]:  # each chart's patterns match logged curves
        assert any(re.match(pattern, t) for t in tags), pattern


def test_debug_fast_and_trainer_cpu_presets(make_cfg, tmp_path):
    cfg = make_cfg("debug=fast", "trainer=cpu")
    assert cfg.data.max_samples == 200 and cfg.model.pretrained is False
    assert cfg.trainer.accelerator == "cpu"
    train(cfg)
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["status"] == "finished"


def test_experiment_preset_composes(make_cfg):
    cfg = make_cfg("experiment=tweets_minilm")
    assert cfg.lr == 5e-5 and cfg.batch_size == 16  # (model=tiny from the command line wins)
    assert cfg.data.label_column == "sentiment" and cfg.max_epochs == 1  # (... and max_epochs=1)


@pytest.mark.parametrize("model", ["bert_base", "distilbert", "roberta_base",
                                   "bert_base_chinese", "xlm_roberta_base"])
def test_hub_models_offline_fail_with_one_clear_error(make_cfg, monkeypatch, model):
    import huggingface_hub.constants
    from omegaconf import OmegaConf

    from bertlab.models.network import build_network

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    cfg = make_cfg(f"model={model}")
    with pytest.raises(Unavailable, match=r"model.name_or_path='[\w/-]+' is neither a local "
                                          r"folder nor a Hub id .*use model=minilm"):
        build_network(OmegaConf.to_container(cfg.model), "classification", ["a", "b"])


@pytest.mark.parametrize("name, data, monitor", [("sst2_bert_base", "sst2", "val/acc"),
                                                  ("stsb_bert_base", "stsb", "val/pearson")])
def test_paper_presets_compose_with_their_lr_grid(name, data, monitor):
    from hydra import compose, initialize_config_dir

    from conftest import CONF

    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=[f"experiment={name}"], return_hydra_config=True)
    assert cfg.data.path == "nyu-mll/glue" and cfg.data.name == data
    assert cfg.model.name_or_path == "google-bert/bert-base-uncased"
    assert (cfg.batch_size, cfg.max_epochs, cfg.monitor, cfg.mode) == (32, 3, monitor, "max")
    assert cfg.hydra.sweeper.params.lr == "2e-5,3e-5,4e-5,5e-5"


def test_max_steps_shorter_than_an_epoch(make_cfg, tmp_path):
    """Stopped by max_steps before any validation: still scored, with the full state saved."""
    train(make_cfg("debug=fast", "trainer.max_steps=3"))
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["status"] == "finished" and metrics["stopped_by"] == "max_steps"
    assert metrics["steps"] == 3 and metrics["val/loss"] > 0 and metrics["test/acc"] >= 0
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()
    from bertlab.models.checkpoints import find_checkpoint

    assert find_checkpoint(str(tmp_path / "run")).name == "last.ckpt"  # for eval, predict, export


def test_two_runs_with_one_seed_are_identical(make_cfg, tmp_path):
    runs = []
    for name in ("a", "b"):
        train(make_cfg("debug=fast", "lr=1e-3", run_dir=tmp_path / name))
        runs.append(json.loads((tmp_path / name / "metrics.json").read_text()))
    finals = [{k: v for k, v in m.items() if "/" in k} for m in runs]
    assert finals[0] == finals[1] and finals[0]["val/loss"] > 0
    train(make_cfg("debug=fast", "lr=1e-3", "seed=1", run_dir=tmp_path / "c"))
    other = json.loads((tmp_path / "c" / "metrics.json").read_text())
    assert other["val/loss"] != finals[0]["val/loss"]


def test_several_loggers_each_hold_curves_hyperparameters_and_final_metrics(make_cfg, tmp_path):
    import csv

    run(make_cfg, "logger=[tensorboard,csv]", "max_epochs=1")
    rows = list(csv.DictReader(open(tmp_path / "run" / "csv" / "metrics.csv")))
    assert any(r["val/acc"] for r in rows) and any(r["test/acc"] for r in rows)
    hparams = (tmp_path / "run" / "csv" / "hparams.yaml").read_text()
    assert "lr: 0.0001" in hparams and "batch_size:" in hparams
    assert any((tmp_path / "run" / "tensorboard").iterdir())


def test_logger_many_and_no_logger(make_cfg, tmp_path):
    assert set(make_cfg("logger=many").logger) == {"tensorboard", "csv"}
    run(make_cfg, "~logger", "max_epochs=1")
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert m["status"] == "finished" and not (tmp_path / "run" / "tensorboard").exists()


def test_mlflow_holds_parameters_metrics_and_the_run_files(make_cfg, tmp_path):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run(make_cfg, "logger=mlflow", f"logger.mlflow.tracking_uri={uri}",
        f"logger.mlflow.artifact_location={tmp_path / 'artifacts'}", "max_epochs=1")
    client = MlflowClient(uri)
    (found,) = client.search_runs([client.get_experiment_by_name("bertlab").experiment_id])
    assert found.info.run_name == "run"  # the run folder's name
    assert found.data.params["lr"] == "0.0001" and found.data.params["optimizer"] == "AdamW"
    final = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert found.data.metrics["test/acc"] == pytest.approx(final["test/acc"])
    files = {a.path for a in client.list_artifacts(found.info.run_id)}
    assert {"metrics.json", "confusion_matrix.png", "errors.csv", ".hydra"} <= files


def test_a_logger_without_its_package_is_one_line(make_cfg, monkeypatch):
    import importlib.util

    from bertlab.training.checks import check_config

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "mlflow" else real(n, *a))
    with pytest.raises(ConfigError, match=r"logger=mlflow needs the mlflow package.*\.\[trackers\]"):
        check_config(make_cfg("logger=mlflow"))


def wandb_record(path, key: bytes) -> bytes:
    """W&B's offline record file, once it holds `key`: W&B's service process writes it, and on a
    loaded machine (CI) it has been seen holding only its header for a while after finish()."""
    for _ in range(60):
        data = path.read_bytes()
        if key in data:
            break
        time.sleep(1)
    return data


def test_wandb_offline_run_holds_hyperparameters_and_final_metrics(make_cfg, tmp_path):
    pytest.importorskip("wandb")
    run(make_cfg, "logger=wandb", "max_epochs=1")
    (record,) = (tmp_path / "run" / "wandb").glob("offline-run-*/run-*.wandb")
    data = wandb_record(record, b"test/acc")  # W&B's own record file, uploaded later by `wandb sync`
    final = json.loads((tmp_path / "run" / "metrics.json").read_text())
    for key in (b"batch_size", b"lr", b"test/acc", b"val/acc", b"plots/confusion_matrix"):
        assert key in data, key
    assert json.dumps(final["test/acc"]).encode() in data  # the final value, not only its name


def test_wandb_gets_the_sweep_summary(make_cfg, tmp_path):
    pytest.importorskip("wandb")
    import matplotlib.pyplot as plt

    from bertlab.files import write_csv
    from bertlab.training.loggers import record_sweep

    sweep = tmp_path / "outputs" / "multiruns" / "2026-01-01_00-00-00"
    sweep.mkdir(parents=True)
    write_csv(sweep / "summary.csv", [{"job": "1_lr=3e-05", "lr": 3e-5, "val/acc": 0.75},
                                      {"job": "0_lr=1e-05", "lr": 1e-5, "val/acc": 0.5}])
    (sweep / "summary.md").write_text("| job | val/acc |\n")
    plt.plot([1, 2]), plt.savefig(sweep / "summary.png"), plt.close()
    record_sweep(make_cfg("logger=wandb").logger, sweep)
    (record,) = (sweep / "wandb").glob("offline-run-*/run-*.wandb")
    data = wandb_record(record, b"sweep/summary")
    for key in (b"sweep/summary", b"sweep/summary_plot", b"best/val/acc", b"1_lr=3e-05"):
        assert key in data, key


class CountRows:
    """A post-training stage of the test's own (stages/__init__.py's interface): plugged in from the
    command line with no change to bertlab."""
    name = "rows_seen"

    def check(self, cfg, dm) -> None:
        assert dm.dataset is not None

    def wanted(self, cfg, dm) -> bool:
        return True

    def run(self, model, dm, run_dir, best, cfg) -> dict:
        return {"validation": dm.documents("validation"), "best": best is not None}


def test_a_post_training_stage_plugs_in_from_the_config(make_cfg, tmp_path):
    run_dir = run(make_cfg, "+post_training.rows={_target_: test_train.CountRows}")
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["rows_seen"] == {"validation": metrics["data"]["rows"]["validation"], "best": True}
    assert run_dir == str(tmp_path / "run")


def test_a_checkpoint_write_that_fails_leaves_the_previous_one_whole(tmp_path):
    from bertlab.training.plugins import AtomicCheckpointIO

    io, path = AtomicCheckpointIO(), tmp_path / "checkpoints" / "last.ckpt"
    io.save_checkpoint({"state_dict": {"w": torch.ones(3)}, "global_step": 1}, path)
    with pytest.raises(Exception):  # a lambda cannot be pickled: the write fails part way
        io.save_checkpoint({"state_dict": {"w": torch.zeros(3)}, "hook": lambda: 0}, path)
    kept = torch.load(path, weights_only=True)
    assert kept["global_step"] == 1 and torch.equal(kept["state_dict"]["w"], torch.ones(3))
    assert [p.name for p in path.parent.iterdir()] == ["last.ckpt"]  # no temporary left
