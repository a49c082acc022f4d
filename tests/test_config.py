"""The config route: `_target_` blocks instantiable as written, one value per setting."""
from __future__ import annotations

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from conftest import CONF


def composed(*overrides: str):
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return compose("train", overrides=list(overrides))


@pytest.mark.parametrize("option", sorted(p.stem for p in (CONF / "optimizer").glob("*.yaml")))
def test_every_optimizer_block_instantiates_as_written(option):
    cfg = composed(f"optimizer={option}")
    params = [torch.nn.Parameter(torch.zeros(2))]
    assert isinstance(instantiate(cfg.optimizer)(params), torch.optim.Optimizer)


@pytest.mark.parametrize("option", sorted(p.stem for p in (CONF / "scheduler").glob("*.yaml")))
def test_every_schedule_block_instantiates_as_written(option):
    cfg = composed(f"scheduler={option}")
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.1)
    extra = {} if cfg.scheduler.get("warmup") is None else {"num_warmup_steps": 1,
                                                           "num_training_steps": 10}
    assert hasattr(instantiate(cfg.scheduler.schedule)(optimizer=optimizer, **extra), "step")


@pytest.mark.parametrize("option", sorted(p.stem for p in (CONF / "loss").glob("*.yaml")))
def test_every_loss_block_instantiates_as_written(option):
    cfg = composed(f"loss={option}")
    extra = {"task": "classification"} if cfg.loss._target_.endswith(".auto") else {}
    assert isinstance(instantiate(cfg.loss, **extra), torch.nn.Module)


def test_the_data_reads_the_top_level_values():
    cfg = composed("max_length=64", "batch_size=8", "seed=3", "model=tiny")
    assert (cfg.data.max_length, cfg.data.batch_size, cfg.data.seed) == (64, 8, 3)
    assert cfg.data.tokenizer == cfg.model.tokenizer
