"""Helpers the test modules share: composing a command's config in-process, a small trained run,
running a command as a user would, and reading predictions."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from hydra import compose, initialize_config_dir

from conftest import CONF, ROOT


def job(sweep, num):
    """A sweep's job folder by number (named `<num>_<overrides>`)."""
    (folder,) = sweep.glob(f"{num}_*")
    return folder


def cli(args, cwd, env=None, **kw):
    return subprocess.run([sys.executable, str(ROOT / "train.py"), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})}, **kw)



def compose_tool(name: str, *overrides: str):
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return compose(name, overrides=list(overrides))



def trained(tmp_path_factory, *overrides):
    """A run of the tiny model on 160 rows, one epoch, trained in this process."""
    from bertlab.training.train import train

    run_dir = tmp_path_factory.mktemp("run")
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=["model=tiny", "data.max_samples=160", "batch_size=16",
                                          "max_epochs=1", f"output_dir={run_dir}", *overrides])
    train(cfg)
    return run_dir


def tool(script, *args, stdin=None):
    return subprocess.run([sys.executable, str(ROOT / script), *args], capture_output=True,
                          text=True, input=stdin, timeout=300)


def evaluate(run_dir, *overrides, out):
    from bertlab.use.evaluate import evaluate as run_eval

    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("eval", overrides=[f"run_dir={run_dir}", f"output_dir={out}", *overrides])
    return run_eval(cfg)


def predictions(path):
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text().splitlines()]
    import csv

    return list(csv.DictReader(path.open()))
