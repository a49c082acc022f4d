"""train(cfg): the recipe. Open the run folder, build the data, build the model, build the
trainer, fit, score the best checkpoint, report. Each step lives in the room named beside it."""
from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from pathlib import Path
from typing import NoReturn

import datasets
import lightning as L
import torch
from lightning.pytorch.utilities.exceptions import SIGTERMException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from bertlab.cli import hydra_state, runs
from bertlab.stages import distill
from bertlab.training import results
from bertlab.callbacks.preemption import Preemption
from bertlab.callbacks.soup import CheckpointSoup
from bertlab.models.checkpoints import checkpoint_hparams, load_network
from bertlab.training.checks import check_config
from bertlab.data.datamodule import TextDataModule, from_config, run_seed
from bertlab.errors import ConfigError, Diverged
from bertlab.hardware import check_cuda
from bertlab.models.classifier import TextClassifier
from bertlab.models.head_init import applies, probe_head, refit_head, refit_wanted
from bertlab.models.network import choose_normalize, choose_pooling
from bertlab.training.plugins import quiet_library_warnings
from bertlab.training.plan import make_plan
from bertlab.training.time_plan import time_budget
from bertlab.training.trainer import build_trainer

log = logging.getLogger(__name__)


def train(cfg: DictConfig) -> float:
    """Train as `cfg` says; returns the monitored metric of the best checkpoint (for sweepers)."""
    started = time.time()
    check_config(cfg)
    check_cuda(cfg.trainer.get("accelerator", "auto"), "trainer.accelerator",
               "trainer=default (a GPU when there is one, else the CPU) or trainer=cpu")
    run_dir = Path(cfg.output_dir)
    if cfg.get("cv") and cfg.get("cv_fold") is None:  # k-fold: one run per fold, inside this one
        from bertlab.stages.cv import cross_validate

        if cfg.get("resume"):
            raise ConfigError(f"cv={cfg.cv} runs cannot be resumed; start the cross-validation again")
        runs.claim_run_dir(run_dir)
        return cross_validate(cfg, train)
    several = (cfg.get("average_runs") or 1) > 1 and cfg.get("average_run") is None
    if not cfg.get("resume"):
        runs.claim_run_dir(run_dir)
        if not several:
            return fit_and_report(cfg, run_dir, None, 0, started)
        runs.write_records(run_dir, cfg, None)  # (what eval.py and predict.py read)
    before = runs.recorded(run_dir) if cfg.get("resume") else {}
    if hydra_state.in_multirun() and before.get("status") in runs.FINISHED:
        hydra_state.leave_untouched(run_dir)  # a finished job's train.log and records stay as they were
        log.info("resume: %s finished before; not run again", run_dir)
        return before.get(before.get("monitor") or cfg.monitor, math.nan)
    if several:
        from bertlab.stages.average_runs import average_runs  # several runs, one model

        if not (run_dir / "provenance.json").exists():  # a sweep's job that never started
            run_dir.mkdir(parents=True, exist_ok=True)
            runs.write_records(run_dir, cfg, None)
        return average_runs(cfg, train)
    checkpoint, step = runs.resume_point(run_dir, before.get("status"))
    run_dir.mkdir(parents=True, exist_ok=True)
    log.info("resuming %s from %s", run_dir, f"step {step}" if checkpoint else
             "the start (no checkpoint was saved)")
    return fit_and_report(cfg, run_dir, checkpoint, step, started)


def fit_and_report(cfg: DictConfig, run_dir: Path, checkpoint: Path | None, step: int,
                   started: float, lr: float | None = None) -> float:
    """The run in a folder it owns: from `checkpoint` (at optimizer step `step`) if resumed; `lr`:
    the range test's (tune_lr.apply). `cfg` is read, never written: the run trains with the
    plan's read-only copy of it (training/plan.py)."""
    set_up_process(cfg)
    teacher = distill.teacher_checkpoint(cfg)  # distill.teacher: the student's model first
    teacher_hp = checkpoint_hparams(teacher)[1] if teacher else None
    student, keep = distill.student_model(cfg, teacher_hp) if teacher else (None, None)
    dm = build_data(cfg, run_dir, student)
    stages = [instantiate(node) for node in (cfg.get("post_training") or {}).values() if node]
    for stage in stages:  # (before training: what cannot work is refused now)
        stage.check(cfg, dm)
    if teacher:
        distill.check_data(teacher_hp, dm)
    plan, chosen = make_plan(cfg, dm, lr, student)
    cfg = plan.applied(cfg)
    one_start = cfg.get("average_run") is not None and checkpoint is None
    if one_start:  # average_runs: every run starts from the same weights (what a soup averages)
        L.seed_everything(cfg.seed, workers=True, verbose=False)
    model = build_model(cfg, dm, checkpoint, chosen)
    init = cfg.model.get("head_init")
    if checkpoint is None and (init == "probe" or init == "auto" and applies(model.net, dm, dm.task)):
        chosen["head_init"] = probe_head(model.net, dm, dm.task)  # LP-FT: the head fitted first
        log.info("head_init: %s", chosen["head_init"])
    if one_start:  # ... and trains with its own seed (dropout, as its batches)
        L.seed_everything(run_seed(cfg), workers=True, verbose=False)
    refit = refit_wanted(cfg.model.get("head_refit"), model.net, dm, dm.task)  # (refused now if it cannot)
    if teacher:
        add_teacher(model, dm, teacher, keep if checkpoint is None else None)
    chosen["parameters"] = {"total": sum(p.numel() for p in model.parameters()),
                            "trainable_at_start": sum(p.numel() for p in model.parameters()
                                                      if p.requires_grad)}
    runs.write_records(run_dir, cfg, None if checkpoint is None else step)
    clock, hard_stop = time_budget(cfg, dict(plan.length), chosen["budget"], dm, model, started,
                                   checkpoint, refit)  # budget.time
    trainer = build_trainer(cfg, {**plan.length, **hard_stop}, step,
                            chosen["budget"]["keep"] == "last", [clock] if clock else [])
    fit_start = time.time()
    diverged = fit(trainer, model, dm, run_dir, checkpoint,
                   run_dir.parent if cfg.get("average_run") is not None else run_dir)
    fit_seconds = round(time.time() - fit_start, 1)  # training, with its per-epoch validation
    if clock:
        chosen["budget"]["time"].update(clock.record)
    ended = results.outcome(trainer, run_dir, diverged)
    metrics = results.run_record(cfg, dm, model, trainer, ended, chosen)
    if teacher:
        metrics["distill"] = distill.record(cfg, dm, keep)
    log.info("fit: %s", metrics["fit"])
    best = trainer.checkpoint_callback.best_model_path if ended["best_checkpoint"] else None
    scored = bool(best) or not diverged  # after a NaN loss, only an earlier checkpoint counts
    soup = next((c for c in trainer.callbacks if isinstance(c, CheckpointSoup)), None)
    if soup and best and len(soup.best_k_models) > 1:  # callbacks=soup: best.ckpt, averaged
        metrics["soup"] = soup.average(trainer, model, dm, best)
    if refit and best:  # model.head_refit: the head fitted again on the fine-tuned encoder
        metrics["head_refit"] = refit_head(trainer, model, dm, best, cfg.monitor, cfg.mode,
                                           guard=chosen["budget"]["keep"] == "best")
    if scored:
        metrics.update(score_best(trainer, model, dm, best))
    for stage in stages if scored and trainer.is_global_zero else []:  # calibration, thresholds
        if stage.wanted(cfg, dm):
            metrics[stage.name] = stage.run(model, dm, run_dir, best, cfg)
    score = results.score_of(metrics, cfg.monitor)
    if trainer.is_global_zero:  # DDP: the other processes only helped compute
        results.report(cfg, run_dir, metrics, trainer, model, dm, scored, started, fit_seconds)
    return score


def add_teacher(model, dm, teacher: Path, keep: list[int] | None) -> None:
    """Distillation: the student starts from the teacher's `keep` layers (a new student), and
    each training row gets the teacher's targets."""
    if keep:
        distill.init_from_teacher(model, load_network(teacher), keep)
    dm.dataset["train"] = dm.dataset["train"].add_column(
        "teacher", distill.targets(teacher, dm, dm.cache_root).tolist())


def set_up_process(cfg: DictConfig) -> None:
    """Seeds, threads, and logging that prints each line once."""
    quiet_library_warnings()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # no fork warnings, no oversubscription
    own = run_seed(cfg)  # one run of average_runs: seed + its index
    L.seed_everything(cfg.seed if own is None else own, workers=True, verbose=False)
    threads = hydra_state.fair_threads()
    if threads:
        torch.set_num_threads(threads)
    log.info("torch threads: %d", torch.get_num_threads())
    datasets.disable_progress_bars()  # small data tokenizes at once (big data turns them on: build)


def build_data(cfg: DictConfig, run_dir: Path, student: dict | None = None) -> TextDataModule:
    """The data, read and tokenized (a distilled `student`'s: with the teacher's tokenizer);
    labels.json names its classes."""
    dm = from_config(cfg, **({"tokenizer": student["tokenizer"]} if student else {}))
    dm.setup("fit")  # (cv=K past the smallest class is refused here, before a fold is announced)
    if cfg.get("cv_fold") is not None:
        log.info("cv: fold %d of %d -> %s", cfg.cv_fold + 1, cfg.cv, run_dir)
    log.info("task %s, %s", dm.task, ", ".join(f"{s}: {dm.documents(s)} rows" for s in dm.dataset))
    if dm.task.has_classes and runs.first_process():  # (DDP: its folder may not exist yet here)
        (run_dir / "labels.json").write_text(json.dumps(dict(enumerate(dm.labels)), indent=1))
    return dm


def build_model(cfg: DictConfig, dm: TextDataModule, resumed: Path | None = None,
                chosen: dict | None = None) -> TextClassifier:
    """The LightningModule for this data; `chosen` (metrics.json's record) gains the pooling."""
    plain = lambda node: OmegaConf.to_container(node, resolve=True)  # noqa: E731
    weights = cfg.class_weights  # balanced, or a list
    weights = plain(weights) if OmegaConf.is_list(weights) else weights
    began = runs.read_checkpoint(resumed, mmap=True)["hyper_parameters"] if resumed else None
    counts = scale = None
    train = dm.dataset["train"]
    labels = torch.tensor(train["labels"][:])
    if "labeled" in train.column_names:  # (not the unlabelled rows' placeholders)
        labels = labels[torch.tensor(train["labeled"][:])]
    if dm.task.has_classes and not dm.task.multi_hot:  # the counts that class weights need
        counts = torch.bincount(labels, minlength=len(dm.labels)).tolist()
    if not dm.task.has_classes and began is not None:  # as it began (before bertlab scaled: raw)
        scale = began.get("target_scale")
    elif not dm.task.has_classes:  # the head learns (y - mean) / std: any units train alike
        scale = [labels.double().mean().item(), labels.double().std(correction=0).item() or 1.0]
    model = plain(cfg.model)
    pooling, why = (began["model"].get("pooling", "cls"), "as the resumed run began") if began \
        else choose_pooling(model, dm.documents("train"))  # auto: by row count
    normalize, norm_why = (began["model"].get("normalize") is True, "as the resumed run began") \
        if began else choose_normalize(model, pooling)
    log.info("pooling: %s (%s)%s", pooling, why,
             f"; normalized ({norm_why})" if normalize else "")
    if chosen is not None:
        chosen["pooling"] = {"value": pooling, "why": why, "normalize": normalize,
                             "normalize_why": norm_why}
    return TextClassifier(model={**model, "pooling": pooling, "normalize": normalize},
                          task=dm.task.name, labels=dm.labels,
                          loss=plain(cfg.loss), optimizer=plain(cfg.optimizer),
                          scheduler=plain(cfg.scheduler), max_length=cfg.max_length,
                          clean=list(cfg.data.clean), class_counts=counts,
                          l1=float(cfg.get("regularization", {}).get("l1") or 0.0),
                          rdrop=float(cfg.get("regularization", {}).get("rdrop") or 0.0),
                          layer_decay=cfg.layer_decay, class_weights=weights, windows=dm.windows,
                          distill={"temperature": float(cfg.distill.temperature),
                                   "alpha": float(cfg.distill.alpha)} if cfg.get("distill", {}).get("teacher")
                          else None, target_scale=scale)


def fit(trainer, model, dm, run_dir: Path, checkpoint: Path | None, resume_dir: Path) -> str | None:
    """trainer.fit; returns why the loss diverged, if it did. SIGTERM or Ctrl-C end the command
    (`resume_dir`: what continues it; one run of average_runs is continued by the whole)."""
    try:
        trainer.fit(model, datamodule=dm, ckpt_path=checkpoint, weights_only=True)
    except SIGTERMException:
        exit_interrupted(run_dir, trainer, resume_dir)
    except Diverged as e:
        return str(e)
    return None


def score_best(trainer, model, dm, best: str | None) -> dict:
    """Validation and test metrics of the best checkpoint (the current weights if none), of
    the splits there are."""
    scores = {}
    for stage in [s for s, split in (("validate", "validation"), ("test", "test")) if split in dm.dataset]:
        found = getattr(trainer, stage)(model, datamodule=dm, ckpt_path=best, verbose=False)
        scores.update(found[0] if found else {})  # none with limit_*_batches=0
    return scores


def exit_interrupted(run_dir: Path, trainer, resume_dir: Path) -> NoReturn:
    """SIGTERM or Ctrl-C: metrics.json says where the run stopped and how to continue it."""
    stop = next((c for c in trainer.callbacks if isinstance(c, Preemption)), None)
    name = (stop and stop.requested) or "SIGTERM"  # without Preemption: Lightning's own stop
    last = run_dir / "checkpoints" / "last.ckpt"
    # the step a resume continues from: the checkpoint's (a signal between its write and the
    # trainer's next step would otherwise report one step more than was saved)
    step = runs.read_checkpoint(last, mmap=True)["global_step"] if last.is_file() else trainer.global_step
    if trainer.is_global_zero:
        runs.write_metrics(run_dir, {
            "status": "interrupted", "signal": name, "steps": step,
            "epochs": trainer.current_epoch,
            "checkpoint": os.path.relpath(last, run_dir) if last.is_file() else None,
            "resume": f"python train.py resume={resume_dir}"})
    print(f"interrupted by {name} at step {step}; "
          f"{f'saved {last}' if last.is_file() else 'no checkpoint yet'}; continue with: "
          f"python train.py resume={resume_dir}", file=sys.stderr)
    raise SystemExit(130 if name == "SIGINT" else 143)
