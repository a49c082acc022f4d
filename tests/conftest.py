"""Shared fixtures: Hydra composed in-process on `model=tiny`, small generated data files.
Unit tests sit in tests/ beside the code they check; e2e/ runs the commands as a user does."""
from __future__ import annotations

import json
import os
import random
from pathlib import Path

# One thread for each process the tests start: `make test` runs two workers on two cores, and
# torch's default (a thread per core, spinning while it waits) in each made the suite a third slower.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest
from hydra import compose, initialize_config_dir

import bertlab  # noqa: F401  (registers the config resolvers)
import prewarmed

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"

POS = ["great", "lovely", "wonderful", "superb", "fine", "happy", "brilliant", "good"]
NEG = ["awful", "terrible", "bad", "boring", "sad", "horrible", "dull", "poor"]
NOUNS = ["film", "plot", "cast", "ending", "music", "story", "script", "pacing"]


def sentences(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """(text, label) rows whose label follows the adjective: learnable, reproducible."""
    rnd = random.Random(seed)
    rows = []
    for i in range(n):
        label = ["negative", "positive"][i % 2]
        adj = rnd.choice(POS if label == "positive" else NEG)
        rows.append((f"the {rnd.choice(NOUNS)} was {adj} and the {rnd.choice(NOUNS)} too", label))
    return rows


prewarmed.parse_config_files_once()  # (the tests compose about a thousand times a worker)

LONGEST_FIRST = ("test_resume.py", "test_sweeps.py")  # minutes of killed, resumed and DDP runs


def pytest_collection_modifyitems(items):
    """The modules with the longest tests first, so that an xdist worker does not end the suite
    alone on a minute-long test while the other one idles (modules stay together)."""
    items.sort(key=lambda item: item.path.name not in LONGEST_FIRST)


@pytest.fixture(autouse=True)
def _environment_kept():
    """Each test starts from the worker's environment: an in-process run may set a variable
    (ensure_hub_or_offline sets HF_HUB_OFFLINE when the Hub is unreachable)."""
    before = dict(os.environ)
    yield
    if os.environ != before:
        os.environ.clear()
        os.environ.update(before)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("BERTLAB_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture
def make_cfg(tmp_path):
    """compose(train, overrides) with the tiny model, one epoch (the budget rule has tests of its
    own) and this test's own run folder."""

    def make(*overrides: str, run_dir: Path | None = None):
        run_dir = run_dir or tmp_path / "run"
        with initialize_config_dir(str(CONF), version_base="1.3"):
            return compose("train", overrides=["model=tiny", "max_epochs=1", f"output_dir={run_dir}",
                                                *overrides])

    return make


@pytest.fixture
def files(tmp_path):
    """Writers of small labelled files in every supported format."""
    import pandas as pd

    def write(name: str, n: int = 120, seed: int = 0, **columns) -> Path:
        rows = sentences(n, seed)
        df = pd.DataFrame({"text": [t for t, _ in rows], "label": [y for _, y in rows]})
        for col, values in columns.items():
            df[col] = values
        path = tmp_path / name
        suffix = path.suffix
        if suffix == ".csv":
            df.to_csv(path, index=False)
        elif suffix == ".tsv":
            df.to_csv(path, index=False, sep="\t")
        elif suffix == ".jsonl":
            df.to_json(path, orient="records", lines=True)
        elif suffix == ".json":
            path.write_text(json.dumps(df.to_dict(orient="records")))
        elif suffix == ".parquet":
            df.to_parquet(path)
        return path

    return write


def stopped_and_resumed(make_cfg, tmp_path: Path, args: list[str]) -> tuple[dict, dict]:
    """(metrics of an uninterrupted 2-epoch run, metrics of the same run stopped after its first
    epoch of 10 steps and continued in-process from last.ckpt). In-process: the kill-and-resume
    machinery has its own subprocess tests in test_resume.py."""
    import time

    import torch

    from bertlab.training.train import fit_and_report, train

    a, b = tmp_path / "a", tmp_path / "b"
    train(make_cfg(*args, "max_epochs=2", run_dir=a))
    train(make_cfg(*args, "max_epochs=1", run_dir=b))
    last = b / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True, mmap=True)["global_step"] == 10
    fit_and_report(make_cfg(*args, "max_epochs=2", run_dir=b), b, last, 10, time.time())
    expected, got = (json.loads((run / "metrics.json").read_text()) for run in (a, b))
    assert got["status"] == "finished" and got["steps"] == expected["steps"] == 20
    return expected, got
