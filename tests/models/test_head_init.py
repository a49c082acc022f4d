"""model.head_init=probe (LP-FT): the head holds the logistic regression fitted on the frozen
encoder's mean-pooled training vectors, so the network answers as that regression does; and
model.head_refit: the same fit on the fine-tuned encoder, written into best.ckpt."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from bertlab.errors import ConfigError
from bertlab.models.head_init import probe_head
from bertlab.models.network import logits
from bertlab.training.train import build_data, build_model, train


def built(make_cfg, tmp_path, *overrides):
    cfg = make_cfg("data.max_samples=160", "batch_size=16", *overrides)
    dm = build_data(cfg, tmp_path)
    return build_model(cfg, dm), dm


@torch.no_grad()
def test_the_head_answers_as_the_fitted_regression(make_cfg, tmp_path):
    model, dm = built(make_cfg, tmp_path, "model.pooling=mean", "model.head_init=probe")
    record = probe_head(model.net, dm, dm.task)
    model.net.eval()
    right = total = 0
    for batch in dm.eval_dataloader("train"):
        out = logits(model.net, dm.task, batch["input_ids"], batch["attention_mask"])
        right += (out.argmax(-1) == batch["labels"]).sum().item()
        total += len(batch["labels"])
    assert total == record["rows"] == len(dm.dataset["train"])
    assert right / total == pytest.approx(record["train_accuracy"], abs=1 / total)
    assert record["train_accuracy"] > 1 / len(dm.labels)  # (it learnt something: not a constant)


def test_a_head_that_reads_cls_is_refused(make_cfg, tmp_path):
    model, dm = built(make_cfg, tmp_path, "model.pooling=cls")
    with pytest.raises(ConfigError, match="model.head_init=probe is for single-label classification"):
        probe_head(model.net, dm, dm.task)


def accuracy(model, dm, split: str = "train") -> float:
    right = total = 0
    with torch.no_grad():
        for batch in dm.eval_dataloader(split):
            out = logits(model.net, dm.task, batch["input_ids"], batch["attention_mask"])
            right += (out.argmax(-1) == batch["labels"]).sum().item()
            total += len(batch["labels"])
    return right / total


REFIT = ["data.max_samples=160", "batch_size=16", "max_epochs=null", "budget.max_epochs=2",
         "model.pooling=mean"]  # (the budget decides: it judges the validation split)


def test_head_refit_puts_the_regression_on_the_trained_encoder_into_best_ckpt(make_cfg, tmp_path):
    cfg = make_cfg(*REFIT, "model.head_refit=true")  # 16 validation rows: the budget keeps the last
    train(cfg)
    run = Path(cfg.output_dir)
    m = json.loads((run / "metrics.json").read_text())
    refit = m["head_refit"]
    assert m["budget"]["keep"] == "last" and refit["kept"] and refit["method"] == "refit"
    # (and does not carve them: they train, and there is no validation score to compare)
    assert refit["rows"] == 144 and refit["val_before"] is refit["val_after"] is None
    best, last = (torch.load(run / "checkpoints" / f, map_location="cpu", weights_only=True)["state_dict"]
                  for f in ("best.ckpt", "last.ckpt"))
    head = [k for k in best if k.endswith("classifier.weight")]
    body = [k for k in best if "classifier" not in k and best[k].is_floating_point()]
    assert head and not torch.equal(best[head[0]], last[head[0]])  # the head changed ...
    assert all(torch.equal(best[k], last[k]) for k in body)  # ... and nothing else did
    model, dm = built(make_cfg, tmp_path, *REFIT)
    model.load_state_dict(best)
    model.eval()
    assert accuracy(model, dm) == pytest.approx(refit["train_accuracy"], abs=1 / refit["rows"])
    assert m["test/acc"] == pytest.approx(accuracy(model, dm, "test"), abs=1e-4)  # scored: the refit head


def test_a_trusted_validation_split_keeps_the_refit_only_if_no_worse(make_cfg):
    cfg = make_cfg(*REFIT, "budget.trust_val_rows=0")  # (auto: pooling=mean applies)
    train(cfg)
    m = json.loads(Path(cfg.output_dir, "metrics.json").read_text())
    refit = m["head_refit"]
    assert m["budget"]["keep"] == "best"
    assert refit["kept"] == (refit["val_after"] >= refit["val_before"])
    assert m["val/acc"] == pytest.approx(max(refit["val_before"], refit["val_after"]), abs=1e-4)


def test_head_refit_true_on_a_cls_head_is_refused_before_training(make_cfg):
    cfg = make_cfg("data.max_samples=160", "model.pooling=cls", "model.head_refit=true")
    with pytest.raises(ConfigError, match="model.head_refit=true refits a head that reads mean pooling"):
        train(cfg)
    assert not Path(cfg.output_dir, "checkpoints").exists()
