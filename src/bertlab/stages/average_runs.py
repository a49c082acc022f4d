"""average_runs=K: K runs (seeds seed..seed+K-1, each with its own validation carve) and their
best weights averaged into one model ("model soups" across fine-tuning runs, Wortsman et al.
2022). Each run is a normal run folder (`<run>/run_<i>/`); `<run>/checkpoints/best.ckpt` holds
the average, which eval.py, predict.py, serve.py and export.py take like any run's.

Each run validates on rows the others train on, so the average has no unseen validation split:
metrics.json's `val/*` are the runs' mean (what a sweep compares), and the test split, the same
rows for every run, scores the average. The average is checked on each run's validation rows
(its training rows where it had none): partly trained on by the other runs, that score flatters
the average, so one under the runs' own is a broken average (runs that did not start from the
same weights, e.g. model.pretrained=false), and the best run alone is kept instead.
Hand-written: Lightning averages weights along one run's trajectory (WeightAveraging/SWA), not
across runs.
"""
from __future__ import annotations

import copy
import json
import logging
import math
import shutil
import statistics
import time
from pathlib import Path

import torch
from omegaconf import DictConfig, open_dict

from bertlab.callbacks.soup import mean
from bertlab.training.plugins import scoring_trainer
from bertlab.cli import runs
from bertlab.errors import ConfigError

log = logging.getLogger(__name__)
SHARED = ("data", "loss", "budget", "precision", "pooling", "lr", "parameters")


def run_config(cfg: DictConfig, index: int) -> DictConfig:
    """Run `index`'s config: its own folder, and resumed if it had begun."""
    one = copy.deepcopy(cfg)
    folder = Path(cfg.output_dir) / f"run_{index}"
    with open_dict(one):
        one.average_run = index
        one.output_dir = str(folder)
        one.resume = str(folder) if cfg.get("resume") and folder.is_dir() else None
    return one


def average_runs(cfg: DictConfig, train) -> float:
    """Train cfg.average_runs runs (a finished one is kept when resumed), average their best
    weights into checkpoints/best.ckpt and score it; returns the runs' mean monitored metric."""
    run_dir, started = Path(cfg.output_dir), time.time()
    records, folders = [], []
    for i in range(cfg.average_runs):
        one = run_config(cfg, i)
        folder = Path(one.output_dir)
        if runs.recorded(folder).get("status") != "finished":
            log.info("average_runs: run %d of %d (seed %d) -> %s", i + 1, cfg.average_runs,
                     cfg.seed + i, folder)
            train(one)
        else:
            log.info("average_runs: run %d of %d finished before (%s)", i + 1, cfg.average_runs, folder)
        if not runs.first_process():
            continue  # DDP: this process helped train; the first one records, averages and scores
        record = runs.recorded(folder)
        if record.get("status") != "finished":
            raise ConfigError(f"run {i} of average_runs={cfg.average_runs} ended with status "
                              f"{record.get('status')} ({folder}); nothing was averaged")
        records.append(record)
        folders.append(folder)
    if not runs.continue_alone():
        return math.nan
    best = average_checkpoints(folders, run_dir / "checkpoints" / "best.ckpt")
    for name in ("labels.json",):  # what eval.py and predict.py read beside the checkpoint
        if (folders[0] / name).is_file():
            (run_dir / name).write_text((folders[0] / name).read_text())
    monitor = records[0]["monitor"]
    trainer = scoring_trainer(cfg.trainer.get("precision", "32-true"), progress_bar=False)
    data = [run_data(cfg, i) for i in range(len(folders))]  # (each run's own carve)
    check = check_average(cfg, trainer, folders, records, best, data)
    scores = score_test(data[0], trainer, best, run_dir)
    shared = [k for k in records[0] if k.startswith("val/")
              and all(isinstance(r.get(k), float) for r in records)]
    metrics = {"status": "finished", "task": records[0]["task"], "monitor": monitor,
               "best_checkpoint": str(best.relative_to(run_dir)),
               "steps": sum(r["steps"] for r in records),  # (every run's, together)
               "epochs": sum(r["epochs"] for r in records),
               **{k: records[0][k] for k in SHARED if k in records[0]},  # (the same in each run)
               "average_runs": {
                   "runs": [{"folder": str(f.relative_to(run_dir)), "seed": cfg.seed + i,
                             "best_epoch": r.get("best_epoch"),
                             **{k: v for k, v in r.items() if k.startswith(("val/", "test/"))}}
                            for i, (f, r) in enumerate(zip(folders, records))],
                   "val_is": "each run's best on its own validation split, averaged (every run "
                             "trained on rows another one validated on); the kept run's own "
                             "where the average was not kept",
                   "check": check},
               **({k: statistics.fmean(r[k] for r in records) for k in shared}
                  if check["kept"] == "average" else  # (the run kept: its own, unseen rows)
                  {k: records[folders.index(run_dir / check["kept"])][k] for k in shared}),
               **scores, "wall_seconds": round(time.time() - started, 1)}
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=1))
    key = next((k for k in scores if not k.endswith("/loss")), next(iter(scores), ""))
    alone = [r.get(key, math.nan) for r in records]
    log.info("average_runs: %s; %s (the runs alone: %s) -> %s",
             f"{len(folders)} runs averaged" if check["kept"] == "average" else
             f"the average scored under the runs alone, {check['kept']} kept",
             ", ".join(f"{k}={v:.4f}" for k, v in scores.items()),
             " / ".join(f"{key} {a:.4f}" for a in alone), run_dir / "metrics.json")
    value = metrics.get(monitor, math.nan)
    return value if isinstance(value, float) and math.isfinite(value) else math.nan


def average_checkpoints(folders: list[Path], out: Path) -> Path:
    """The runs' best.ckpt weights, averaged uniformly, written to `out` (run 0's checkpoint
    otherwise: its hyperparameters)."""
    from bertlab.models.checkpoints import find_checkpoint

    states = [torch.load(find_checkpoint(str(f)), map_location="cpu", weights_only=True)
              for f in folders]
    checkpoint = {k: v for k, v in states[0].items()
                  if k in ("state_dict", "hyper_parameters", "pytorch-lightning_version")}
    checkpoint["state_dict"] = mean([s["state_dict"] for s in states])
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, out)
    return out


def run_data(cfg: DictConfig, index: int):
    """Run `index`'s data, as it was split (every split: its own validation rows, the shared test)."""
    from bertlab.data.datamodule import from_config

    dm = from_config(run_config(cfg, index))
    dm.setup("fit")
    return dm


def check_average(cfg: DictConfig, trainer, folders: list[Path], records: list[dict],
                  best: Path, data: list) -> dict:
    """The average against each run on that run's validation rows (training rows without any):
    kept if its mean `monitor` there is no worse than the runs' own; else the best run's
    weights replace it in `best`. Returns metrics.json's record."""
    from bertlab.cli.checks import resolve_monitor
    from bertlab.models.checkpoints import find_checkpoint, load_model
    from bertlab.models.scoring import no_worse

    monitor, mode = resolve_monitor(records[0]["monitor"], cfg.mode, records[0]["task"])
    average, ones, averaged, splits = load_model(best), [], [], []
    for folder, dm in zip(folders, data):
        split = "validation" if "validation" in dm.dataset else "train"
        loader = dm.eval_dataloader(split)
        for model, into in ((load_model(find_checkpoint(str(folder))), ones), (average, averaged)):
            into.append(float(trainer.validate(model, dataloaders=loader, verbose=False)[0][monitor]))
        splits.append(split)
    kept = "average"
    if not no_worse(statistics.fmean(averaged), statistics.fmean(ones), mode):
        pick = (max if mode == "max" else min)(range(len(ones)), key=ones.__getitem__)
        kept = folders[pick].name
        shutil.copyfile(find_checkpoint(str(folders[pick])), best)
        log.warning("average_runs: the averaged weights score %s %.4f on the runs' own %s rows "
                    "against %.4f for the runs alone; %s's best weights are kept instead",
                    monitor, statistics.fmean(averaged), "/".join(sorted(set(splits))),
                    statistics.fmean(ones), kept)
    return {"monitor": monitor, "splits": splits, "runs": ones, "average": averaged,
            "kept": kept, "rule": "the average is kept if its mean on the runs' own rows (which "
                                  "the other runs trained on) is no worse than theirs"}


def score_test(dm, trainer, best: Path, run_dir: Path) -> dict:
    """`best`'s test metrics on `dm`'s test split (none without one), and its errors and
    confusion matrix beside metrics.json."""
    from bertlab.analysis.breakdown import analyse
    from bertlab.models.checkpoints import load_model

    if "test" not in dm.dataset:
        return {}
    model = load_model(best)
    scores = trainer.test(model, dataloaders=dm.eval_dataloader("test"), verbose=False)[0]
    analyse(model, dm, "test", run_dir)
    return scores
