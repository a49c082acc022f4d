"""Runs that survive: SIGKILL and SIGTERM mid-run, then `resume=`, reach the uninterrupted metrics
(a resumed sweep: test_sweeps.py, on the sweep its lr test made)."""
from __future__ import annotations

import json
import signal
import time

import pytest
import torch

from conftest import sentences
import helpers
from helpers import evaluate

FINAL = ("val/loss", "val/acc", "test/loss", "test/acc")


def args(data, *extra):
    return ["model=tiny", "data=files", f"data.train_file={data}", "batch_size=16", "max_epochs=2",
            "lr=2e-3", "trainer.deterministic=true", "trainer.enable_progress_bar=false",
            "callbacks.preemption.every_n_steps=3", "trainer.log_every_n_steps=1", *extra]


def start(argv, cwd, new_session=False):
    return helpers.start("train.py", argv, cwd, merge=True, new_session=new_session)


def finish(argv, cwd):
    p = start(argv, cwd)
    out = p.communicate(timeout=300)[0]
    assert p.returncode == 0, out[-3000:]
    return out


def step_of(ckpt):
    return torch.load(ckpt, map_location="cpu", weights_only=True, mmap=True)["global_step"]


def wait_for_checkpoint(proc, ckpt, after_step=-1, timeout=120):
    """Poll until `ckpt` holds a step beyond `after_step`; return that step."""
    end = time.time() + timeout
    while time.time() < end:
        assert proc.poll() is None, "the run ended before it could be stopped"
        if ckpt.is_file():
            try:
                step = step_of(ckpt)
            except Exception:  # (only possible without atomic writes)
                step = -1
            if step > after_step:
                return step
        time.sleep(0.02)
    raise TimeoutError(ckpt)


def scalars(run, tag):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run / "tensorboard"))
    acc.Reload()
    return [(e.step, e.value) for e in acc.Scalars(tag)]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    import pandas as pd

    rows = sentences(400)  # 320 training rows: 20 steps an epoch
    path = tmp_path_factory.mktemp("resume") / "d.csv"
    pd.DataFrame({"text": [t for t, _ in rows], "label": [y for _, y in rows]}).to_csv(path,
                                                                                      index=False)
    return path


def test_killed_and_preempted_run_resumes_to_the_same_metrics(data, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    finish(args(data, f"hydra.run.dir={a}"), tmp_path)
    expected = json.loads((a / "metrics.json").read_text())

    # 1. SIGKILL in the first epoch, as soon as a mid-epoch checkpoint exists
    last = b / "checkpoints" / "last.ckpt"
    p = start(args(data, f"hydra.run.dir={b}"), tmp_path)
    wait_for_checkpoint(p, last)
    p.kill()
    p.wait()
    killed_at = step_of(last)
    assert 0 < killed_at < 20, killed_at
    # a crash in the middle of a checkpoint write leaves a temporary file, never a torn last.ckpt
    (last.parent / ".last.ckpt.tmp99999").write_bytes(b"PK\x03\x04 half a checkpoint")
    refusals_are_one_line(b, tmp_path)

    # 2. resume, then SIGTERM in the second epoch: a checkpoint at the step boundary, status
    p = start([f"resume={b}"], tmp_path)
    wait_for_checkpoint(p, last, after_step=20)
    p.send_signal(signal.SIGTERM)
    out = p.communicate(timeout=120)[0]
    assert p.returncode == 143, out[-3000:]
    assert f"resume={b}" in out
    status = json.loads((b / "metrics.json").read_text())
    assert status["status"] == "interrupted" and status["signal"] == "SIGTERM"
    assert status["steps"] == step_of(last) and 20 < status["steps"] < 40
    assert not list(last.parent.glob(".*.tmp*"))  # the torn write was cleared on resume

    # 3. resume to the end: the same numbers as the run that was never stopped
    finish([f"resume={b}"], tmp_path)
    got = json.loads((b / "metrics.json").read_text())
    assert got["status"] == "finished" and got["steps"] == expected["steps"] == 40
    for key in FINAL:
        assert got[key] == pytest.approx(expected[key], abs=1e-6), key
    # one TensorBoard log, each step once, the same curve
    got_curve, expected_curve = scalars(b, "train/loss_step"), scalars(a, "train/loss_step")
    assert [s for s, _ in got_curve] == [s for s, _ in expected_curve] == list(range(40))
    assert [v for _, v in got_curve] == pytest.approx([v for _, v in expected_curve], abs=1e-6)
    assert [s for s, _ in scalars(b, "val/loss")] == [s for s, _ in scalars(a, "val/loss")]
    # the first part's Hydra records stay; the resumed parts are recorded beside them
    assert (b / ".hydra" / "config.yaml").is_file()
    assert len(list((b / ".hydra").glob("resume-*/overrides.yaml"))) >= 1
    assert len(json.loads((b / "provenance.json").read_text())["resumed"]) == 2


def refusals_are_one_line(run, tmp_path):
    """A stopped run continues with its own config only; a damaged last checkpoint or a folder
    that holds no run is refused in one line (a finished run: test_mistakes.py)."""
    import shutil

    damaged = tmp_path / "damaged"
    shutil.copytree(run, damaged)
    last = damaged / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[:5000])
    cases = [([f"resume={damaged}"], "truncated"),
             ([f"resume={run}", "lr=0.1"], "drop lr=0.1"),
             ([f"resume={tmp_path}"], "not a run or sweep folder")]
    for argv, words in cases:
        r = helpers.cli(argv, tmp_path)
        assert r.returncode != 0
        assert r.stderr.strip().splitlines()[-1].startswith("error:") and words in r.stderr, \
            r.stderr[-2000:]
        assert "Traceback" not in r.stderr
    shutil.rmtree(damaged)


def test_ctrl_c_saves_and_stops_and_a_second_exits_at_once(data, tmp_path, monkeypatch):
    run = tmp_path / "run"
    last = run / "checkpoints" / "last.ckpt"
    p = start(args(data, f"hydra.run.dir={run}"), tmp_path)
    wait_for_checkpoint(p, last)
    p.send_signal(signal.SIGINT)
    out = p.communicate(timeout=120)[0]
    assert p.returncode == 130, out[-3000:]
    status = json.loads((run / "metrics.json").read_text())
    assert status["status"] == "interrupted" and status["signal"] == "SIGINT"
    assert status["steps"] == step_of(last)
    assert "Traceback" not in out

    import os

    from bertlab.callbacks.preemption import Preemption

    exits = []
    monkeypatch.setattr(os, "_exit", exits.append)
    stop = Preemption(dirpath=str(tmp_path))
    stop.handle(signal.SIGINT, None)
    assert stop.requested == "SIGINT" and exits == []
    stop.handle(signal.SIGINT, None)
    assert exits == [130]


def test_ddp_run_killed_mid_epoch_resumes_to_the_same_metrics(data, tmp_path):
    import os

    finish(args(data, "trainer=ddp_cpu"), tmp_path)  # the default place: one folder for both processes
    (whole,) = (tmp_path / "outputs" / "runs").iterdir()
    expected = json.loads((whole / "metrics.json").read_text())
    assert len(list((whole / "tensorboard").glob("events.*"))) >= 1
    single = evaluate(whole, "split=validation", out=tmp_path / "eval")  # (in this process)
    # synced across both processes: the same as one process on the whole validation split
    assert single["validation/acc"] == pytest.approx(expected["val/acc"], abs=1e-6)
    assert single["validation/loss"] == pytest.approx(expected["val/loss"], abs=1e-5)
    run, last = tmp_path / "ddp", tmp_path / "ddp" / "checkpoints" / "last.ckpt"
    p = start(args(data, "trainer=ddp_cpu", f"hydra.run.dir={run}"), tmp_path, new_session=True)
    killed_at = wait_for_checkpoint(p, last, timeout=240)
    os.killpg(p.pid, signal.SIGKILL)  # both processes
    p.wait()
    assert 0 < killed_at < 10, killed_at  # 320 rows, batch 16 on each of 2 processes
    finish([f"resume={run}"], tmp_path)
    got = json.loads((run / "metrics.json").read_text())
    assert got["status"] == "finished" and got["steps"] == expected["steps"] == 20, got
    assert [s for s, _ in scalars(run, "train/loss_step")] == list(range(20))
    for key in FINAL:  # each process got its own random state back, and its own rows
        assert got[key] == pytest.approx(expected[key], abs=1e-6), key
