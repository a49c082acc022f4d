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
    """One home each: max_length, batch_size, seed and the tokenizer are top-level (model.)
    keys that the data module is given; the data config holds no copy of them."""
    from bertlab.data.datamodule import from_config

    cfg = composed("max_length=64", "batch_size=8", "seed=3", "model=tiny")
    assert not {"max_length", "batch_size", "seed", "tokenizer"} & set(cfg.data)
    dm = from_config(cfg)
    assert (dm.cfg["max_length"], dm.batch_size, dm.seed) == (64, 8, 3)
    assert dm.tokenizer.name_or_path == cfg.model.tokenizer


GROUPS = sorted(p.name for p in CONF.iterdir() if p.is_dir() and p.name != "hydra")


@pytest.mark.parametrize("group, option", [
    (g, p.stem) for g in GROUPS for p in sorted((CONF / g).glob("*.yaml")) if p.stem != "base"])
def test_every_option_of_every_group_composes_and_resolves(group, option):
    """As lightning-hydra-template does: each option on its own, resolved (a base file's keys
    reach every option that builds on it)."""
    from omegaconf import OmegaConf

    extra = ["output_dir=out"] + (["data.train_file=x.csv"] if (group, option) == ("data", "files") else [])
    cfg = composed(f"{group}={option}", *extra)
    resolved = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    if group in ("data", "model"):
        base = OmegaConf.load(CONF / group / "base.yaml")
        assert set(base) <= set(resolved[group])


@pytest.mark.parametrize("group", ["data", "model"])
def test_group_options_copy_no_key_of_their_base(group):
    """An option sets only what differs from base.yaml: no copied key (and no copied comment)."""
    from omegaconf import OmegaConf

    def built(name: str) -> dict:  # the file with what it builds on (base, or another option)
        cfg = OmegaConf.to_container(OmegaConf.load(CONF / group / f"{name}.yaml"))
        parents = [d for d in cfg.pop("defaults", []) if d != "_self_"]
        return {**(built(parents[0]) if parents else {}), **cfg}

    for path in sorted((CONF / group).glob("*.yaml")):
        if path.stem == "base":
            continue
        option = OmegaConf.to_container(OmegaConf.load(path))
        parent = built([d for d in option["defaults"] if d != "_self_"][0])
        same = [k for k, v in option.items() if k != "defaults" and parent.get(k, object()) == v]
        assert same == [], (path.name, same)


@pytest.mark.parametrize("args", [
    ["optimizer=sgd", "lr=3e-5", "data.read_kwargs={encoding: latin-1}", "~callbacks.early_stopping",
     "+extra.note=hi", "model.config_overrides.hidden_dropout_prob=0.2", "hydra.run.dir=somewhere"],
    ["-m", "optimizer=adam,sgd", "lr=1e-5,3e-5", "batch_size=8"],
])
def test_the_check_composes_what_hydra_composes(args):
    """check_overrides' one composition (groups, then the values applied) is the config Hydra
    makes of the same command line, swept values left out."""
    from omegaconf import OmegaConf
    from bertlab.cli.overrides import check_overrides, override_args

    argv, cfg = check_overrides(args, CONF, "train")
    plain = [a for a in override_args(argv) if not ("," in a and "{" not in a)]
    plain = [a.replace("optimizer=adam,sgd", "optimizer=adam") for a in plain]
    if "-m" in args:
        plain.append("optimizer=adam")
    with initialize_config_dir(str(CONF), version_base="1.3"):
        hydra_cfg = compose("train", overrides=plain, return_hydra_config=True)
    ours, theirs = (OmegaConf.to_container(c) for c in (cfg, hydra_cfg))
    for c in (ours, theirs):  # (Hydra's record of the command line: not read before it runs)
        del c["hydra"]["overrides"], c["hydra"]["job"]["override_dirname"]
    assert ours == theirs


def test_a_command_composes_its_config_once_before_hydra(monkeypatch, tmp_path):
    """The checks and the run folder read one composition; Hydra's own is the run's."""
    import sys
    import hydra
    from bertlab.cli.entry import entry

    calls = []
    real = hydra.compose
    monkeypatch.setattr(hydra, "compose", lambda *a, **k: calls.append(a) or real(*a, **k))
    monkeypatch.setattr(hydra, "main", lambda **k: (lambda f: (lambda: None)))
    monkeypatch.setenv("BERTLAB_STARTED", "0")  # (entry sets it; restored after)
    monkeypatch.setattr(sys, "argv", ["train.py", "lr=3e-5", "model=tiny",
                                      f"hydra.run.dir={tmp_path / 'run'}"])
    entry(str(CONF.parent / "train.py"), "train", "bertlab.training.train:train")
    assert len(calls) == 1
    assert (tmp_path / "run" / ".claim").exists()  # (the folder was claimed from that composition)
