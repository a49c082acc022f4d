"""k-fold cross-validation: one normal run per fold, their spread, and the folds' ensemble on test.

With a few hundred labelled rows, fine-tuning varies strongly with the split and the seed; one
score says little. `cv=5` trains five runs (`<run>/fold_<i>/`, each one a run folder that eval.py
and predict.py accept), reports every fold's metrics and their mean ± std, and scores the test
split with the folds' averaged predictions. Hand-written because Lightning has no k-fold loop.
"""
from __future__ import annotations

import copy
import json
import logging
import math
import statistics
import time
from pathlib import Path

from omegaconf import DictConfig, open_dict

from bertlab.cli import runs
from bertlab.models.scoring import collect, score
from bertlab.files import markdown_table
from bertlab.models.checkpoints import find_checkpoint, load_model
from bertlab.task import task_of

log = logging.getLogger(__name__)


def fold_config(cfg: DictConfig, index: int) -> DictConfig:
    fold = copy.deepcopy(cfg)
    with open_dict(fold):
        fold.cv_fold = index
        fold.output_dir = str(Path(cfg.output_dir) / f"fold_{index}")
    return fold


def summary(folds: list[dict]) -> dict:
    """Each metric's mean and (sample) standard deviation over the folds."""
    keys = [k for k in folds[0] if "/" in k and all(isinstance(f.get(k), float) for f in folds)]
    return {k: {"mean": statistics.fmean(f[k] for f in folds),
                "std": statistics.stdev(f[k] for f in folds) if len(folds) > 1 else 0.0}
            for k in keys}


def ensemble_test(fold_dirs: list[Path], dm) -> dict:
    """Test metrics of the folds' best models with their predictions averaged."""
    loader = dm.eval_dataloader("test")
    total, target = None, None
    for run in fold_dirs:
        probs, target = collect(load_model(find_checkpoint(str(run))), loader)
        total = probs if total is None else total + probs
    return score(dm.task, dm.num_labels, "test", total / len(fold_dirs), target)


def write_table(path: Path, folds: list[dict], spread: dict, ensemble: dict) -> None:
    keys = list(spread)
    rows = [[i, f.get("best_epoch"), *(f"{f[k]:.4f}" for k in keys)] for i, f in enumerate(folds)]
    rows.append(["mean ± std", "", *(f"{spread[k]['mean']:.4f} ± {spread[k]['std']:.4f}"
                                     for k in keys)])
    lines = ["# Cross-validation", "", *markdown_table(["fold", "best epoch", *keys], rows)]
    if ensemble:
        lines += ["", "Test split scored with the folds' averaged predictions: "
                  + ", ".join(f"{k} {v:.4f}" for k, v in ensemble.items())]
    path.write_text("\n".join(lines) + "\n")


def cross_validate(cfg: DictConfig, train) -> float:
    """Run `train` on each fold of cfg.cv; returns the mean of the monitored metric."""
    from bertlab.data.datamodule import from_config

    run_dir, started = Path(cfg.output_dir), time.time()
    folds, dirs = [], []
    for i in range(cfg.cv):
        fold = fold_config(cfg, i)
        train(fold)
        if not runs.first_process():
            continue  # DDP: this process helped train; the first one reads, ensembles and records
        record = json.loads((Path(fold.output_dir) / "metrics.json").read_text())
        if record.get("status") != "finished":
            raise RuntimeError(f"fold {i} ended with status {record.get('status')}")
        folds.append(record)
        dirs.append(Path(fold.output_dir))
    if not runs.continue_alone():
        return math.nan
    monitor = folds[0]["monitor"]
    spread = summary(folds)
    dm = from_config(fold_config(cfg, 0))
    dm.setup("test")
    ensemble = ensemble_test(dirs, dm) if "test" in dm.dataset else {}
    result = {"status": "finished", "task": folds[0]["task"], "monitor": monitor,
              "cv": {"folds": cfg.cv, "stratified": task_of(folds[0]["task"]).stratified,
                     "runs": [str(d.relative_to(run_dir)) for d in dirs]},
              "folds": [{k: v for k, v in f.items() if "/" in k or k == "best_epoch"} for f in folds],
              "mean": {k: v["mean"] for k, v in spread.items()},
              "std": {k: v["std"] for k, v in spread.items()},
              **{f"ensemble_{k}": v for k, v in ensemble.items()},
              "wall_seconds": round(time.time() - started, 1)}
    (run_dir / "metrics.json").write_text(json.dumps(result, indent=1))
    write_table(run_dir / "cv.md", folds, spread, ensemble)
    log.info("cv: %s", ", ".join(f"{k} {v['mean']:.4f} ± {v['std']:.4f}" for k, v in spread.items()))
    if ensemble:
        log.info("cv: the folds' averaged predictions on test: %s",
                 ", ".join(f"{k}={v:.4f}" for k, v in ensemble.items()))
    score = spread.get(monitor, {}).get("mean", math.nan)
    return score
