"""The command line as a user meets it: run folders, multiruns, one-line errors."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT
from helpers import cli, job, start

SMOKE = ["model=tiny", "data.max_samples=120", "batch_size=16", "max_epochs=1"]


def test_two_runs_started_together_get_their_own_folders(tmp_path):
    procs = [start("train.py", SMOKE, tmp_path, merge=True) for _ in range(2)]
    for p in procs:
        out = p.communicate(timeout=300)[0]
        assert p.returncode == 0, out[-3000:]
    runs = sorted((tmp_path / "outputs" / "runs").iterdir())
    assert len(runs) == 2
    for run in runs:
        assert (run / "metrics.json").is_file() and (run / ".hydra" / "config.yaml").is_file()
        assert (run / "checkpoints" / "best.ckpt").is_file()


def test_multirun_lr_sweep_and_its_resume(tmp_path):
    """A sweep's folders, loggers and summary; then `resume=<sweep>` runs only its unfinished jobs."""
    pytest.importorskip("mlflow")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    r = cli([*SMOKE, "lr=1e-5,3e-5,5e-5", "logger=[tensorboard,mlflow]", "max_epochs=null",
             "budget.time=5m", "-m"], tmp_path,
            env={"MLFLOW_TRACKING_URI": uri})  # (-m after the overrides works too)
    assert r.returncode == 0, r.stderr[-3000:]
    sweeps = list((tmp_path / "outputs" / "multiruns").iterdir())
    assert len(sweeps) == 1
    jobs = [job(sweeps[0], i) for i in range(3)]
    assert [j.name for j in jobs] == ["0_lr=1e-05", "1_lr=3e-05", "2_lr=5e-05"]  # the swept key only
    lrs = []
    for folder in jobs:
        metrics = json.loads((folder / "metrics.json").read_text())
        assert metrics["status"] == "finished"
        assert metrics["budget"]["time"]["seconds"] == 300 and metrics["budget"]["time"]["plans"]
        assert (folder / "checkpoints" / "last.ckpt").is_file()
        config = (folder / ".hydra" / "config.yaml").read_text()
        lrs.append(next(line for line in config.splitlines() if line.startswith("lr:")))
    assert lrs == ["lr: 1.0e-05", "lr: 3.0e-05", "lr: 5.0e-05"]
    from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer
    from tensorboard.plugins.hparams import plugin_data_pb2

    mux = EventMultiplexer().AddRunsFromDirectory(str(sweeps[0])).Reload()
    runs = set(mux.PluginRunToTagToContent("hparams"))
    assert {r.split("/")[0] for r in runs} == {j.name for j in jobs}  # a readable run per job
    content = mux.PluginRunToTagToContent("hparams")[f"{jobs[1].name}/tensorboard"]
    start = next(plugin_data_pb2.HParamsPluginData.FromString(c).session_start_info
                 for c in content.values()
                 if plugin_data_pb2.HParamsPluginData.FromString(c).HasField("session_start_info"))
    assert start.hparams["lr"].number_value == pytest.approx(3e-5)
    assert start.hparams["model"].string_value == "tiny"
    assert start.hparams["data.max_samples"].number_value == 120
    for name in ("summary.csv", "summary.md", "summary.png"):
        assert (sweeps[0] / name).is_file(), name
    # the summary reaches each logger: TensorBoard (text and plot) and MLflow (a run of its own)
    summary = mux.GetAccumulator("tensorboard")
    assert "sweep/summary/text_summary" in summary.Tags()["tensors"]
    assert "sweep/summary" in summary.Tags()["images"]
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    found = client.search_runs([client.get_experiment_by_name("bertlab").experiment_id])
    names = {f.info.run_name: f for f in found}
    sweep_name = f"multiruns/{sweeps[0].name}"
    assert set(names) == {sweep_name} | {f"{sweep_name}/{j.name}" for j in jobs}  # every job too
    assert {a.path for a in client.list_artifacts(names[sweep_name].info.run_id)} == {
        "summary.md", "summary.csv", "summary.png"}
    best = job(sweeps[0], names[sweep_name].data.params["best_job"].split("_")[0])
    monitor = json.loads((best / "metrics.json").read_text())["val/acc"]  # (the classifier's monitor)
    assert monitor == max(json.loads((j / "metrics.json").read_text())["val/acc"] for j in jobs)
    assert names[sweep_name].data.metrics["best/val/acc"] == pytest.approx(monitor)
    resumed_sweep_runs_only_unfinished_jobs(sweeps[0], jobs, tmp_path, {"MLFLOW_TRACKING_URI": uri})


def resumed_sweep_runs_only_unfinished_jobs(sweep, jobs, tmp_path, env):
    import shutil

    done = jobs[0] / "metrics.json"
    before, log = done.stat().st_mtime_ns, (jobs[0] / "train.log").read_bytes()
    (jobs[1] / "metrics.json").unlink()  # killed after its last checkpoint
    shutil.rmtree(jobs[2])  # never started
    r = cli([f"resume={sweep}"], tmp_path, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert done.stat().st_mtime_ns == before  # the finished job was not run again
    for folder in jobs:
        assert json.loads((folder / "metrics.json").read_text())["status"] == "finished"
    assert "finished before" in r.stdout + r.stderr  # said on the console; the finished job's folder is
    assert (jobs[0] / "train.log").read_bytes() == log  # as it was (its log got lines appended)
    assert not list(jobs[0].glob(".hydra/resume-*")) and list(jobs[1].glob(".hydra/resume-*"))
    assert (sweep / "summary.csv").read_text().count("\n") == 4  # header + three jobs


@pytest.mark.parametrize("args, words", [
    (["optimizer=adagrad"], "error: optimizer=adagrad is not an option; valid: adam, adamw, "
                            "rmsprop, sgd"),
    (["-m", "model=tiny,huge"], "error: model=huge is not an option; valid: "),
    (["lr=0"], "error: lr=0 is not valid; use a positive number"),
    (["data=files"], "error: data.train_file is not set"),
    (["data=files", "data.train_file=missing.csv"],
     "error: data.train_file=missing.csv does not exist"),
])
def test_user_errors_are_one_line(tmp_path, args, words):
    r = cli([*SMOKE, *args], tmp_path)
    assert r.returncode != 0
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith(words), r.stderr[-2000:]
    assert "Traceback" not in r.stderr


def test_hub_model_offline_is_one_line(tmp_path):
    r = cli(["model=bert_base", "data.max_samples=120"], tmp_path, env={"HF_HUB_OFFLINE": "1"})
    assert r.returncode == 1 and "Traceback" not in r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("error: model.name_or_path='google-bert/bert-base-uncased' is neither")
    assert "model=minilm" in last


def fake_job(sweep, num, overrides, metrics=None):
    job = sweep / str(num)
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    (job / ".hydra" / "config.yaml").write_text("monitor: val/acc\nmode: max\n")
    if metrics is not None:
        (job / "metrics.json").write_text(json.dumps(metrics))


def test_report_rebuilds_a_seeded_interrupted_sweep(tmp_path):
    import csv

    sweep = tmp_path / "sweep"
    accs = {("1e-05", 1): 0.70, ("1e-05", 2): 0.72, ("3e-05", 1): 0.80, ("3e-05", 2): 0.84}
    for i, ((lr, seed), acc) in enumerate(accs.items()):
        fake_job(sweep, i, [f"lr={lr}", f"seed={seed}", "model=tiny"],
                 {"status": "finished", "val/acc": acc, "best_epoch": 0, "wall_seconds": 9.0})
    fake_job(sweep, 4, ["lr=5e-05", "seed=1", "model=tiny"])  # interrupted: no metrics.json
    r = subprocess.run([sys.executable, str(ROOT / "report.py"), f"sweep_dir={sweep}"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = list(csv.DictReader((sweep / "summary.csv").open()))
    assert [row["job"] for row in rows] == ["3", "2", "1", "0", "4"]  # best val/acc first
    assert rows[-1]["status"] == "incomplete" and "model" not in rows[0]  # only swept keys
    md = (sweep / "summary.md").read_text()
    assert "4 of 5 jobs finished" in md
    assert "| 3e-05 | 2 | 0.8200 ± 0.0283 |" in md and "| 1e-05 | 2 | 0.7100 ± 0.0141 |" in md
    assert (sweep / "summary.png").stat().st_size > 1000


def test_a_job_with_an_unreadable_metrics_json_is_listed_and_the_rest_summarized(tmp_path):
    """A torn metrics.json (a full disk, a hand edit) was a JSONDecodeError traceback."""
    import csv

    sweep = tmp_path / "sweep"
    for i, acc in enumerate([0.7, 0.8]):
        fake_job(sweep, i, [f"lr={i}e-05"], {"status": "finished", "val/acc": acc})
    fake_job(sweep, 2, ["lr=9e-05"])
    (sweep / "2" / "metrics.json").write_text('{"status": "finis')
    r = subprocess.run([sys.executable, str(ROOT / "report.py"), f"sweep_dir={sweep}"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert f"warning: {sweep / '2' / 'metrics.json'} cannot be read" in r.stderr
    rows = list(csv.DictReader((sweep / "summary.csv").open()))
    assert [(row["job"], row["status"]) for row in rows] == [
        ("1", "finished"), ("0", "finished"), ("2", "unreadable")]


def test_a_cv_sweep_is_summarized_by_its_fold_means_and_resolved_monitor(tmp_path):
    """A cv job's own config keeps monitor=auto (each fold resolves it): the summary sorted such
    sweeps by val/loss, with empty metric columns, before it read metrics.json's."""
    from bertlab.analysis.report import summarize

    sweep = tmp_path / "sweep"
    for i, (lr, acc, loss) in enumerate([("1e-4", 0.70, 0.5), ("3e-4", 0.80, 0.6)]):
        fake_job(sweep, i, [f"lr={lr}", "cv=3"], {
            "status": "finished", "task": "classification", "monitor": "val/acc",
            "mean": {"val/acc": acc, "val/loss": loss}, "std": {"val/acc": 0.01, "val/loss": 0.02},
            "wall_seconds": 30.0})
        (sweep / str(i) / ".hydra" / "config.yaml").write_text("monitor: auto\nmode: auto\n")
    rows = summarize(sweep)
    assert [(r["lr"], r["val/acc"]) for r in rows] == [("3e-4", 0.80), ("1e-4", 0.70)]
    assert "sorted by val/acc (higher is better)" in (sweep / "summary.md").read_text()


def test_a_sweep_whose_jobs_have_no_validation_score_says_it_is_not_ranked(tmp_path):
    """Jobs on a few rows a class validate nothing (their split trained): the summary said
    "sorted by val/acc" over a table with no val/acc."""
    from bertlab.analysis.report import summarize

    sweep = tmp_path / "sweep"
    for i, acc in enumerate([0.6, 0.7]):
        fake_job(sweep, i, [f"lr={i + 1}e-05"], {"status": "finished", "test/acc": acc,
                                                  "data": {"validation": {"not_carved_rows": 2}}})
    summarize(sweep)
    title = (sweep / "summary.md").read_text().splitlines()[0]
    assert title.startswith("# Sweep summary: 2 of 2 jobs finished, not ranked: no job has val/acc")
    assert "budget.trust_val_rows=0 carves one" in title and "sorted by" not in title


def test_joblib_runs_jobs_in_parallel_with_a_share_of_the_cores(tmp_path):
    """Two jobs at once, each with its share of the cores; a job that fails (lr=-1) does not stop
    the sweep: recorded as failed, listed at the end, and the sweep exits non-zero."""
    r = cli(["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", *SMOKE, "lr=1e-4,-1,3e-4"],
            tmp_path)
    assert r.returncode == 1, r.stderr[-3000:]
    assert "error: 1 of 3 jobs failed" in r.stderr
    assert "job 1_" in r.stderr and ": lr=-1 is not valid" in r.stderr
    (sweep,) = (tmp_path / "outputs" / "multiruns").iterdir()
    statuses = [json.loads((job(sweep, i) / "metrics.json").read_text())["status"] for i in range(3)]
    assert statuses == ["finished", "failed", "finished"]
    share = max(1, (os.cpu_count() or 1) // 2)
    for folder in (job(sweep, 0), job(sweep, 2)):
        assert f"torch threads: {share}" in (folder / "train.log").read_text()
    from hydra import compose, initialize_config_dir

    from conftest import CONF

    with initialize_config_dir(str(CONF), version_base="1.3"):  # a search launches as many at once
        for launcher, n_jobs in ((["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], 2), ([], 1)):
            cfg = compose("train", overrides=["hparams_search=lr_optuna", *launcher],
                          return_hydra_config=True)
            assert cfg.hydra.sweeper.n_jobs == n_jobs


def test_submitit_local_executor_and_the_slurm_option(tmp_path):
    from hydra import compose, initialize_config_dir

    from conftest import CONF

    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=["hydra/launcher=slurm"], return_hydra_config=True)
    assert cfg.hydra.launcher._target_.endswith("SlurmLauncher")
    assert cfg.hydra.launcher.gpus_per_node == 1
    with initialize_config_dir(str(CONF), version_base="1.3"):  # many nodes: one task per GPU
        cfg = compose("train", overrides=["hydra/launcher=slurm", "trainer=ddp", "trainer.devices=8",
                                          "trainer.num_nodes=4"], return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert (launcher.nodes, launcher.gpus_per_node, launcher.tasks_per_node) == (4, 8, 8)
    assert (cfg.trainer.num_nodes, cfg.trainer.strategy) == (4, "ddp")
    r = cli(["-m", "hydra/launcher=slurm", "trainer=ddp", "lr=1e-5"], tmp_path)  # devices: -1
    assert r.returncode == 2 and "give trainer.devices=<GPUs per node>" in r.stderr, r.stderr
    r = cli(["-m", "hydra/launcher=submitit_local", "hydra.launcher.cpus_per_task=1",
             "hydra.launcher.timeout_min=10", *SMOKE, "lr=1e-4,3e-4"], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    (sweep,) = (tmp_path / "outputs" / "multiruns").iterdir()
    for folder in (job(sweep, 0), job(sweep, 1)):
        assert json.loads((folder / "metrics.json").read_text())["status"] == "finished"
        assert "torch threads: 1" in (folder / "train.log").read_text()


def test_two_workers_share_one_journal_study(tmp_path):
    """Two searches started at once on one JournalStorage file: every trial run once, by one of
    them, with draws of its own; the summary from the study; another space refused."""
    import optuna

    journal = tmp_path / "study.log"
    args = ["-m", "hparams_search=lr_optuna", *SMOKE, "hydra.sweeper.n_trials=6",
            f"hparams_search.storage={journal}", "trainer.enable_progress_bar=false"]
    workers = [start("train.py", args, tmp_path) for _ in range(2)]
    for w in workers:
        assert w.wait(timeout=300) == 0, w.stderr.read()[-3000:]
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal)))
    trials = optuna.load_study(study_name="lr_optuna", storage=storage).trials
    assert len(trials) in (6, 7)  # (two workers asking for the last trial at once: one more)
    assert all(t.state.is_finished() for t in trials)
    ran_by = {t.system_attrs["worker"] for t in trials}
    assert len(ran_by) == 2 and {w.split(":")[1] for w in ran_by} == {str(w.pid) for w in workers}
    assert len({json.dumps(t.params, sort_keys=True) for t in trials}) == len(trials)
    search = tmp_path / "outputs" / "searches" / "lr_optuna"
    for t in trials:  # one folder per trial, which ran to an end
        assert json.loads((job(search, t.number) / "metrics.json").read_text())["status"] in (
            "finished", "pruned")
    assert json.loads((search / "best.json").read_text())["trials"] == len(trials)
    size = journal.stat().st_size
    other = cli(args[:-1] + ["lr=choice(1e-4,2e-4)"], tmp_path)
    assert other.returncode == 2 and "searches another space (lr: tag(log, interval(1e-5, 3e-4)) " \
        "there, choice(1e-4,2e-4) here)" in other.stderr.strip().splitlines()[-1], other.stderr[-2000:]
    assert journal.stat().st_size == size


def test_a_trial_claimed_a_moment_ago_is_not_stale():
    """Between claim()'s two writes another worker may read a trial with its heartbeat and no
    name yet (or with neither): young, so not given up; the two-worker search above once lost
    that race. A silent or ended worker's trial is stale."""
    import datetime
    import socket
    import time
    from types import SimpleNamespace

    from bertlab.cli.search import STALE_AFTER, stale, worker

    now = time.time()
    ended = subprocess.Popen(["true"])
    ended.wait()

    def trial(**attrs):
        return SimpleNamespace(system_attrs=attrs,
                               datetime_start=datetime.datetime.fromtimestamp(now - 1))

    assert not stale(trial(), now)
    assert not stale(trial(heartbeat=now - 1), now)
    assert not stale(trial(worker=worker()), now)
    assert not stale(trial(worker=worker(), heartbeat=now - 1), now)
    assert stale(trial(worker=worker(), heartbeat=now - STALE_AFTER - 1), now)
    assert stale(trial(worker=f"{socket.gethostname()}:{ended.pid}", heartbeat=now - 1), now)


def test_optuna_search_continues_and_prunes(tmp_path):
    # seed=1: the sampler's draws decide which trials can be pruned; under optuna 5.1, seed 0 draws
    # lr=1e3 for trials 0, 1 and 3, and 3 lands under the median of 1 and 2 (nothing pruned)
    args = ["-m", "hparams_search=lr_optuna", *SMOKE, "max_epochs=2", "lr=choice(1e-4,1e3)",
            "hydra.sweeper.pruner.n_startup_trials=1", "seed=1"]
    first = cli([*args, "hydra.sweeper.n_trials=3"], tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    search = tmp_path / "outputs" / "searches" / "lr_optuna"
    assert json.loads((search / "best.json").read_text())["trials"] == 3
    again = cli([*args, "hydra.sweeper.n_trials=5"], tmp_path)  # the same search, continued
    assert again.returncode == 0, again.stderr[-3000:]
    assert "3 trials done, 2 to go" in again.stdout + again.stderr
    best = json.loads((search / "best.json").read_text())
    assert best["trials"] == 5 and best["pruned"] >= 1
    folders = [job(search, i) for i in range(5)]  # trials 3 and 4 numbered on from the first
    assert folders[3].name.startswith("3_lr=") and "classifier_dropout=" in folders[3].name
    statuses = [json.loads((f / "metrics.json").read_text())["status"] for f in folders]
    assert statuses.count("pruned") == best["pruned"]
    summary = (search / "summary.md").read_text()
    assert f"{best['pruned']} pruned" in summary and "Best val/loss" in summary
