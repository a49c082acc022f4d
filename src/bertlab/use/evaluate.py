"""evaluate(cfg): test a trained checkpoint again, on its own split or on a new labelled file."""
from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import datasets
from omegaconf import DictConfig

from bertlab.analysis.breakdown import analyse
from bertlab.models.scoring import decide, predicted, score
from bertlab.data.datamodule import from_config
from bertlab.errors import ConfigError, DataError
from bertlab.training.plugins import quiet_library_warnings, scoring_trainer
from bertlab.models.checkpoints import find_checkpoint, load_model
from bertlab.use.checks import check_eval, check_split
from bertlab.cli.runs import run_config

log = logging.getLogger(__name__)


def evaluate(cfg: DictConfig) -> dict:
    check_eval(cfg)
    ckpt = find_checkpoint(cfg.run_dir, cfg.ckpt_path)
    train_cfg = run_config(cfg.run_dir)
    model = load_model(ckpt)
    quiet_library_warnings()
    datasets.disable_progress_bars()
    data = {}
    if cfg.file:  # a new labelled file, read with the run's columns and cleaning
        data.update(train_file=None, validation_file=None, test_file=str(cfg.file),
                    format=None, read_kwargs=dict(cfg.get("read_kwargs") or {}),
                    labels=list(model.hparams.labels), task=model.task.name, val_size=0, test_size=0)
        for key in ("text_column", "text_pair_column", "label_column"):
            if cfg.get(key):
                data[key] = cfg[key]
        split, name = "test", Path(cfg.file).stem
    else:
        split = name = cfg.split
    dm = from_config(train_cfg, **data)
    try:
        dm.setup("test")
    except DataError as e:  # for file=, the keys that read it are this command's own
        if not cfg.file:
            raise
        raise DataError(re.sub(r"\bdata\.(text_column|text_pair_column|label_column|read_kwargs)\b",
                               r"\1", str(e))) from e
    check_split(split, list(dm.dataset), dm.val_trained)
    if (train_cfg.get("average_runs") or 1) > 1 and train_cfg.get("average_run") is None \
            and split != "test" and not cfg.file:
        raise ConfigError(f"split={split}: run_dir={cfg.run_dir} averages {train_cfg.average_runs} "
                          f"runs, each of which trained on rows another validated on; evaluate "
                          f"split=test or a file=, or one run's own split (run_dir=<run>/run_0)")
    if dm.task != model.task:
        raise ConfigError(f"{ckpt} is a {model.task} checkpoint but the data is for "
                          f"{dm.task}; give a checkpoint of this run")
    if not cfg.file and dm.labels != list(model.hparams.labels):
        raise ConfigError(f"the run's data now gives labels {dm.labels}, the checkpoint has "
                          f"{list(model.hparams.labels)}; evaluate on a file instead (file=...)")
    trainer = scoring_trainer(train_cfg.trainer.get("precision", "32-true"))
    raw = trainer.test(model, dataloaders=dm.eval_dataloader(split), verbose=False)[0]
    stage = split if not cfg.file else "test"
    metrics = {"checkpoint": str(ckpt), "data": name, "rows": dm.documents(split),
               **{k.replace("test/", f"{stage}/", 1): v for k, v in raw.items()}}
    if model.thresholds:  # multi-label: the run's own decisions, beside 0.5's above
        scores, target = predicted(model, dm.eval_dataloader(split))
        decided = decide(scores, model.thresholds)
        metrics["thresholds"] = {
            "thresholds": dict(zip(model.hparams.labels, model.thresholds)),
            **{k: round(v, 4) for k, v in score(model.task, model.num_labels, stage, decided,
                                                 target).items()}}
    out = Path(cfg.output_dir)
    metrics["analysis"] = analyse(model, dm, split, out)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    log.info("%s: %s -> %s", name, ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()
                                              if "/" in k), out / "metrics.json")
    if "thresholds" in metrics:
        log.info("at the run's thresholds: %s", ", ".join(
            f"{k}={v:.4f}" for k, v in metrics["thresholds"].items() if "/" in k))
    return metrics
