"""The console says only what asks something of the user; the run's log file keeps the rest.
eval.py, export.py, shrink.py and predict.py are held to the same rule where their command lines
run already: tests/use/test_use.py and tests/training/test_recipe.py (helpers.assert_quiet)."""
from __future__ import annotations

import json

from helpers import assert_quiet, cold_caches, compose_tool, tool


def test_ordinary_commands_print_no_library_chatter(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    run, env = tmp_path / "run", cold_caches(tmp_path)
    train = tool("train.py", "model=tiny", "data.max_samples=200", "logger=[tensorboard,mlflow]",
                 f"logger.mlflow.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}",
                 f"hydra.run.dir={run}", env=env)
    assert_quiet(train)
    issues = tool("find_label_issues.py", "model=tiny", "data.max_samples=200", "folds=2",
                  "max_epochs=1",  # (fine-tunes its folds)
                  f"hydra.run.dir={tmp_path / 'issues'}", env=env)
    assert_quiet(issues)
    # (200 rows: the 20 a validation split would hold train too; eval and shrink use the test split)
    assert "final: test/loss=" in train.stdout + train.stderr
    assert "validation" not in json.loads((run / "metrics.json").read_text())["data"]["rows"]
    from bertlab.use.shrink import shrink

    shrink(compose_tool("shrink", f"run_dir={run}", f"output_dir={tmp_path / 'small'}"))
    assert "test/acc" in capsys.readouterr().out
    refused = tool("eval.py", f"run_dir={run}", "split=validation")
    assert refused.returncode == 2 and ("error: split=validation is not in this run's data (its 20 "
                                        "validation rows were too few to carve: they trained, "
                                        "budget.trust_val_rows); it has: train, test") in refused.stderr
    assert "label issues:" in issues.stdout + issues.stderr
    assert (tmp_path / "issues" / "label_issues.csv").is_file()
    assert "GPU available" in (run / "train.log").read_text()  # the log file keeps Lightning's lines
