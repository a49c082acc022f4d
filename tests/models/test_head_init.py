"""model.head_init=probe (LP-FT): the head holds the logistic regression fitted on the frozen
encoder's mean-pooled training vectors, so the network answers as that regression does."""
from __future__ import annotations

import pytest
import torch

from bertlab.errors import ConfigError
from bertlab.models.head_init import probe_head
from bertlab.models.network import logits
from bertlab.training.train import build_data, build_model


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
