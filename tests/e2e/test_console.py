"""The console says only what asks something of the user; the run's log file keeps the rest."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import ROOT

# printed in ordinary runs before, each asking nothing of a user
NOISE = ("litlogger", "GPU available", "TPU available", "smaller than the logging interval",
         "Restoring states from the checkpoint", "Generating train split", "Map:", "INFO: ",
         "TypedStorage is deprecated", "quantized tensor creation", "Writing model shards",
         "Loading weights", "FutureWarning", "Creating initial MLflow", "leaked semaphore")


def command(script: str, *args: str, cwd) -> str:
    """The command's console, with empty caches (a warm one hides the bars of first reads)."""
    env = {**os.environ, "HF_DATASETS_CACHE": str(cwd / "cache_hf"), "BERTLAB_CACHE": str(cwd / "cache")}
    r = subprocess.run([sys.executable, str(ROOT / f"{script}.py"), *args], cwd=cwd,
                       capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout + r.stderr


def test_ordinary_commands_print_no_library_chatter(tmp_path):
    run = tmp_path / "run"
    said = {"train": command("train", "model=tiny", "data.max_samples=200", "logger=[tensorboard,mlflow]",
                             f"logger.mlflow.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}",
                             f"hydra.run.dir={run}", cwd=tmp_path)}
    said["eval"] = command("eval", f"run_dir={run}", cwd=tmp_path)
    said["shrink"] = command("shrink", f"run_dir={run}", cwd=tmp_path)
    (small,) = run.glob("shrink/*/model.ckpt")
    (tmp_path / "in.txt").write_text("a fine film\n")
    said["predict"] = command("predict", f"ckpt_path={small}", f"input={tmp_path / 'in.txt'}",
                              f"output={tmp_path / 'p.jsonl'}", cwd=tmp_path)
    said["export"] = command("export", f"run_dir={run}", f"out={tmp_path / 'hf'}", cwd=tmp_path)
    said["find_label_issues"] = command("find_label_issues", "model=tiny", "data.max_samples=200",
                                        "folds=2", "max_epochs=1",  # (fine-tunes its folds)
                                        f"hydra.run.dir={tmp_path / 'issues'}", cwd=tmp_path)
    for name, text in said.items():
        assert not [n for n in NOISE if n in text], (name, text[-3000:])
    # (200 rows: the 20 a validation split would hold train too; eval and shrink use the test split)
    assert "final: test/loss=" in said["train"] and "wrote 1 predictions" in said["predict"]
    assert "test/acc" in said["shrink"] and "validation" not in json.loads(
        (run / "metrics.json").read_text())["data"]["rows"]
    refused = subprocess.run([sys.executable, str(ROOT / "eval.py"), f"run_dir={run}",
                              "split=validation"], cwd=tmp_path, capture_output=True, text=True,
                             timeout=300)
    assert refused.returncode == 2 and ("error: split=validation is not in this run's data (its 20 "
                                        "validation rows were too few to carve: they trained, "
                                        "budget.trust_val_rows); it has: train, test") in refused.stderr
    assert "label issues:" in said["find_label_issues"]
    assert (tmp_path / "issues" / "label_issues.csv").is_file()
    assert "GPU available" in (run / "train.log").read_text()  # the log file keeps Lightning's lines
