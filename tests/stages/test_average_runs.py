"""average_runs=K: K runs with their own seeds and validation rows, their best weights averaged."""
from __future__ import annotations

import json

import pytest
import torch
from hydra import compose, initialize_config_dir

from bertlab.errors import ConfigError
from bertlab.training.train import train
from conftest import CONF

FAST = ["data.max_samples=160", "batch_size=16", "lr=1e-3"]


def eval_cfg(run, out, *more):
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return compose("eval", overrides=[f"run_dir={run}", f"output_dir={out}", *more])


def assert_best_holds(run, kept: str) -> None:
    """<run>/checkpoints/best.ckpt holds the mean of the two runs' best weights (kept "average"),
    or the kept run's own ("run_<i>"), on a weight where the runs differ."""
    states = [torch.load(run / f"run_{i}" / "checkpoints" / "best.ckpt", weights_only=True)["state_dict"]
              for i in range(2)]
    best = torch.load(run / "checkpoints" / "best.ckpt", weights_only=True)["state_dict"]
    key = next(k for k, v in best.items() if torch.is_floating_point(v) and v.numel() > 1
               and not torch.equal(states[0][k], states[1][k]))
    want = (states[0][key].double() + states[1][key].double()).div(2).to(best[key].dtype) \
        if kept == "average" else states[int(kept.removeprefix("run_"))][key]
    assert torch.allclose(best[key], want)


def test_two_runs_are_trained_and_their_best_weights_averaged(make_cfg, tmp_path):
    from bertlab.use.evaluate import evaluate

    train(make_cfg(*FAST, "average_runs=2", "seed=3"))
    run = tmp_path / "run"
    m = json.loads((run / "metrics.json").read_text())
    ones = [json.loads((run / f"run_{i}" / "metrics.json").read_text()) for i in range(2)]
    assert m["status"] == "finished"
    assert [r["folder"] for r in m["average_runs"]["runs"]] == ["run_0", "run_1"]
    assert [r["seed"] for r in m["average_runs"]["runs"]] == [3, 4]
    # every run tests on the same rows, but validates on its own: together they train on all
    rows = [r["data"]["rows"] for r in ones]
    assert rows[0] == rows[1]
    val = []
    for i in range(2):
        with initialize_config_dir(str(CONF), version_base="1.3"):
            one = compose("train", overrides=["model=tiny", "max_epochs=1", *FAST, "average_runs=2", "seed=3",
                                              f"average_run={i}", f"output_dir={tmp_path / 'x'}"])
        from bertlab.data.datamodule import from_config

        dm = from_config(one)
        dm.setup("fit")
        val.append(set(dm.eval_texts("validation")))
    assert val[0] != val[1]
    assert_best_holds(run, "average")  # the element-wise mean of the runs' best weights
    # checked on each run's own validation rows, no worse than the runs alone there: kept
    check = m["average_runs"]["check"]
    assert check["kept"] == "average" and check["splits"] == ["validation", "validation"]
    assert sum(check["average"]) >= sum(check["runs"])
    # val/*: the runs' mean (the average has no unseen validation rows); test/*: the average's
    assert m["val/acc"] == pytest.approx((ones[0]["val/acc"] + ones[1]["val/acc"]) / 2)
    assert m["average_runs"]["runs"][1]["test/acc"] == ones[1]["test/acc"]
    result = evaluate(eval_cfg(run, tmp_path / "e1"))
    assert result["test/acc"] == pytest.approx(m["test/acc"], abs=1e-6)
    assert (run / "errors.csv").is_file() and (run / "labels.json").is_file()
    with pytest.raises(ConfigError,
                       match=r"split=validation: run_dir=.* averages 2 runs, .*run_dir=<run>/run_0"):
        evaluate(eval_cfg(run, tmp_path / "e2", "split=validation"))


def test_an_average_worse_than_the_runs_alone_is_replaced_by_the_best_run(make_cfg, tmp_path,
                                                                         files, caplog):
    # the random-weights tiny model learns these rows at lr 1e-3 in one pass from the same
    # start, into places whose average is worse (0.92-0.94 against 1.0 on the runs' own rows)
    data = files("train.csv", n=1200)
    train(make_cfg("data=files", f"data.train_file={data}", "batch_size=16", "lr=1e-3", "average_runs=2"))
    run = tmp_path / "run"
    m = json.loads((run / "metrics.json").read_text())
    check = m["average_runs"]["check"]
    assert sum(check["average"]) < sum(check["runs"])
    kept = check["kept"]
    assert kept == f"run_{max(range(2), key=check['runs'].__getitem__)}"
    ours = torch.load(run / "checkpoints" / "best.ckpt", weights_only=True)["state_dict"]
    theirs = torch.load(run / kept / "checkpoints" / "best.ckpt", weights_only=True)["state_dict"]
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)
    one = json.loads((run / kept / "metrics.json").read_text())
    assert m["test/acc"] == pytest.approx(one["test/acc"], abs=1e-6) and m["val/acc"] == one["val/acc"]
    assert f"{kept}'s best weights are kept instead" in caplog.text


def test_a_resumed_average_keeps_its_finished_runs(make_cfg, tmp_path):
    run = tmp_path / "run"
    train(make_cfg(*FAST, "average_runs=2"))
    first = (run / "run_0" / "checkpoints" / "best.ckpt").stat().st_mtime_ns
    (run / "run_1" / "metrics.json").unlink()  # as if run 1 had been stopped before it finished
    (run / "metrics.json").unlink()
    train(make_cfg(*FAST, "average_runs=2", f"resume={run}"))
    assert (run / "run_0" / "checkpoints" / "best.ckpt").stat().st_mtime_ns == first
    assert json.loads((run / "metrics.json").read_text())["status"] == "finished"


@pytest.mark.parametrize("stage", ["average_runs=2", "cv=2", "find_label_issues.py"])
def test_a_stage_of_several_runs_trains_each_under_ddp_and_the_first_process_scores(stage, tmp_path):
    """trainer=ddp_cpu (two processes) with average_runs, cv or find_label_issues.py's folds: both
    processes train every run, only the first records, averages (ensembles, finds) and scores,
    without waiting on the other."""
    from helpers import cli, command

    if stage == "find_label_issues.py":
        r = command(stage, ["model=tiny", "trainer=ddp_cpu", "data.max_samples=120", "folds=2",
                            "max_epochs=1", "output_dir=run"], tmp_path)
    else:
        r = cli(["debug=fast", "trainer=ddp_cpu", stage, "hydra.run.dir=run"], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    run = tmp_path / "run"
    m = json.loads((run / "metrics.json").read_text())
    assert m["status"] == "finished"
    if stage == "find_label_issues.py":
        assert m["rows"] == 120 and (run / "label_issues.csv").is_file()
        assert json.loads((run / "cv" / "metrics.json").read_text())["status"] == "finished"
        return
    if stage == "cv=2":
        assert len(m["folds"]) == 2 and (run / "cv.md").is_file()
        assert isinstance(m["mean"]["test/acc"], float) and isinstance(m["ensemble_test/acc"], float)
        return
    assert isinstance(m["test/acc"], float)
    ones = [json.loads((run / f"run_{i}" / "metrics.json").read_text()) for i in range(2)]
    assert [o["status"] for o in ones] == ["finished", "finished"]
    assert [o["test/acc"] for o in ones] == [x["test/acc"] for x in m["average_runs"]["runs"]]
    assert_best_holds(run, m["average_runs"]["check"]["kept"])


@pytest.mark.parametrize("bad, words", [
    ("average_runs=0", r"average_runs=0 is not valid; use a number of runs >= 1"),
    ("average_runs=two", r"average_runs='two' is not valid"),
    ("average_run=1", r"average_run=1 is not valid; use 0..average_runs-1"),
    ("average_runs=2 cv=2", r"average_runs=2 cannot be combined with cv=2"),
    ("average_runs=2 budget.time=5m", r"average_runs=2 cannot be combined with budget.time=5m"),
    ("average_runs=2 calibrate=true", r"average_runs=2 cannot be combined with calibrate=True")])
def test_bad_average_runs_values_are_refused_before_training(make_cfg, tmp_path, bad, words):
    with pytest.raises(ConfigError, match=words):
        train(make_cfg(*FAST, *bad.split()))
    assert not (tmp_path / "run" / "run_0").exists()
