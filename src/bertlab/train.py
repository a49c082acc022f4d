"""train(cfg): fit, then validate and test the best checkpoint, and fill the run folder."""
from __future__ import annotations

import json
import logging
import math
import os
import shutil
import sys
import time
import warnings
from pathlib import Path

import datasets
import torch
import lightning as L
from hydra.utils import instantiate
from lightning.pytorch.callbacks import EarlyStopping
from lightning.pytorch.callbacks.early_stopping import EarlyStoppingReason
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf

from bertlab.analysis import analyse
from bertlab.budget import plan
from bertlab import cli
from bertlab.cli import CLAIM, in_multirun
from bertlab.callbacks.preemption import Preemption
from bertlab.callbacks.pruning import EncoderPruning
from bertlab.callbacks.unfreeze import UnfreezeAt
from bertlab.checks import check_config, resolve_monitor
from bertlab.data.datamodule import from_config
from bertlab.errors import ConfigError, Diverged
from bertlab.models.classifier import TextClassifier
from bertlab.plugins import choose_precision, hardware, trainer_plugins, uses_cuda
from bertlab.runs import read_checkpoint, recorded

log = logging.getLogger(__name__)


def claim_run_dir(run_dir: Path) -> None:
    """Make the folder this run's alone: refused if it holds a run or another command claimed it
    (an exclusive create of .claim; train.py's entry point usually claimed it already)."""
    if os.environ.get("LOCAL_RANK", "0") != "0":
        return  # a DDP process that Lightning started for the run that rank 0 claimed
    claim = run_dir / CLAIM
    for name in ("metrics.json", "checkpoints"):
        if (run_dir / name).exists():
            raise ConfigError(f"output_dir={run_dir} already holds a run ({name}); "
                              f"choose a new folder")
    if claim.is_file():
        if cli.OWNED is not None and cli.OWNED.resolve() == run_dir.resolve():
            return  # claimed by this command before Hydra started
        raise ConfigError(f"output_dir={run_dir} already holds a run ({CLAIM}); choose a new folder")
    run_dir.mkdir(parents=True, exist_ok=True)
    if not cli.create_claim(run_dir):
        raise ConfigError(f"output_dir={run_dir} was claimed by another run at the same moment; "
                          f"choose a new folder")


FINISHED = ("finished", "diverged", "pruned")  # statuses a resumed sweep does not run again


def resume_point(run_dir: Path, status: str | None) -> tuple[Path | None, int]:
    """The run's checkpoints/last.ckpt (None: start over in the same folder) and its step."""
    if not run_dir.is_dir():
        return None, 0  # a sweep job that never started
    if status in FINISHED:
        raise ConfigError(f"resume={run_dir} has already finished (status {status}); "
                          f"start a new run instead")
    for stale in run_dir.glob("checkpoints/.*.tmp*"):  # a write that a crash cut short
        stale.unlink()
    last = run_dir / "checkpoints" / "last.ckpt"
    if not last.is_file():
        return None, 0
    step = read_checkpoint(last, mmap=True).get("global_step", 0)
    return last, step


def copy_hydra_records(dest: Path) -> None:
    from hydra.core.hydra_config import HydraConfig

    hc = HydraConfig.get()
    for path in (Path(hc.runtime.output_dir) / hc.output_subdir).glob("*.yaml"):
        if not (dest / path.name).exists():
            shutil.copy(path, dest / path.name)


def interrupted(run_dir: Path, trainer) -> None:
    """SIGTERM or Ctrl-C: metrics.json says where the run stopped and how to continue it."""
    stop = next((c for c in trainer.callbacks if isinstance(c, Preemption)), None)
    name = (stop and stop.requested) or "SIGTERM"  # without Preemption: Lightning's own stop
    last = run_dir / "checkpoints" / "last.ckpt"
    if trainer.is_global_zero:
        (run_dir / "metrics.json").write_text(json.dumps({
            "status": "interrupted", "signal": name, "steps": trainer.global_step,
            "epochs": trainer.current_epoch,
            "checkpoint": os.path.relpath(last, run_dir) if last.is_file() else None,
            "resume": f"python train.py resume={run_dir}"}, indent=1))
    print(f"interrupted by {name} at step {trainer.global_step}; "
          f"{f'saved {last}' if last.is_file() else 'no checkpoint yet'}; continue with: "
          f"python train.py resume={run_dir}", file=sys.stderr)
    raise SystemExit(130 if name == "SIGINT" else 143)


def readable_hparams(cfg: DictConfig, choices: dict) -> dict:
    """What a person compares runs by, for TensorBoard's HPARAMS tab."""
    return {
        "lr": cfg.lr, "batch_size": cfg.batch_size, "max_epochs": cfg.max_epochs or -1,
        "weight_decay": cfg.weight_decay, "max_length": cfg.max_length, "seed": cfg.seed,
        "optimizer": choices.get("optimizer") or cfg.optimizer._target_.rsplit(".", 1)[-1],
        "scheduler": choices.get("scheduler") or cfg.scheduler.get("name")
        or cfg.scheduler._target_.rsplit(".", 1)[-1],
        "loss": choices.get("loss") or cfg.loss._target_.rsplit(".", 1)[-1],
        "model": choices.get("model") or Path(cfg.model.name_or_path).name,
        "data": choices.get("data") or Path(str(cfg.data.get("train_file"))).name,
        "precision": str(cfg.trainer.get("precision", "32-true")),
    }


def write_hparams(logger, params: dict, metrics: dict) -> None:
    """The HPARAMS record, once, at the end, naming the scalar tags that hold the final values.

    Lightning's log_hyperparams(params, metrics) would also write the metrics as extra points
    at step 0 of the curves, so the record is written with torch's summary helper instead.
    """
    from torch.utils.tensorboard.summary import hparams

    writer = logger.experiment._get_file_writer()
    for summary in hparams(params, metrics):
        writer.add_summary(summary)
    writer.flush()


def stop_reason(trainer) -> str:
    """max_epochs, early stopping, or divergence (EarlyStopping's check for a non-finite metric)."""
    for cb in trainer.callbacks:
        if isinstance(cb, EarlyStopping) and cb.stopping_reason != EarlyStoppingReason.NOT_STOPPED:
            if cb.stopping_reason in (EarlyStoppingReason.NON_FINITE_METRIC,
                                      EarlyStoppingReason.DIVERGENCE_THRESHOLD):
                return f"divergence: {cb.stopping_reason_message}"
            return "early stopping"
    return "max_steps" if trainer.max_steps not in (-1, None) and \
        trainer.global_step >= trainer.max_steps else "max_epochs"


def diagnose(fit: dict, task: str, counts: list[int] | None) -> str:
    """One line: does the last epoch look over-fitted, under-fitted, or neither?"""
    if task == "regression":
        train, val, r = fit.get("train/mse"), fit.get("val/mse"), fit.get("val/pearson")
        if None in (train, val, r):
            return "unknown: train or val metrics are missing"
        numbers = f"train mse {train:.4f}, val mse {val:.4f}, val pearson {r:.3f}"
        if r < 0.1:
            return f"underfitting: {numbers}; try a higher lr or more epochs"
        if val > 1.25 * train:
            return f"overfitting: {numbers}; try more dropout or weight decay, or fewer epochs"
        return f"no sign of over- or underfitting: {numbers}"
    train, val = fit.get("train/acc"), fit.get("val/acc")
    if train is None or val is None:
        return "unknown: train or val metrics are missing"
    numbers = f"train acc {train:.3f}, val acc {val:.3f}"
    majority = max(counts) / sum(counts) if counts else 0.0
    if val <= majority + 0.02:
        return (f"underfitting: {numbers}, no better than always predicting the most common "
                f"label ({majority:.3f}); try a higher lr, more epochs or less freezing")
    if train - val > 0.05:
        return (f"overfitting: {numbers}; try more dropout or weight decay, fewer epochs or "
                f"more data")
    return f"no sign of over- or underfitting: {numbers}"


def fair_threads() -> int | None:
    """Torch threads for one job when a launcher runs several at once: its share of the cores."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    launcher = HydraConfig.get().launcher
    if launcher.get("cpus_per_task"):  # submitit: what each job was given
        return int(launcher.cpus_per_task)
    n_jobs = launcher.get("n_jobs")  # joblib: jobs at once; -1 means one per core
    cores = os.cpu_count() or 1
    if n_jobs:
        return max(1, cores // (cores if n_jobs < 0 else n_jobs))
    return None


def provenance() -> dict:
    """Versions and the git commit (with a dirty flag), so that a result can be traced."""
    import importlib.metadata as md
    import subprocess

    versions = {}
    for dist in ("bertlab", "torch", "transformers", "lightning", "datasets", "hydra-core"):
        try:
            versions[dist] = md.version(dist)
        except md.PackageNotFoundError:
            versions[dist] = None
    here = Path(__file__).resolve().parent
    git = lambda *a: subprocess.run(["git", *a], cwd=here, capture_output=True,  # noqa: E731
                                    text=True, timeout=10)
    try:
        commit = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
        code = ({"commit": commit.stdout.strip(), "dirty": bool(dirty.stdout.strip())}
                if commit.returncode == 0 else None)
    except (OSError, subprocess.TimeoutExpired):
        code = None  # no git, or not a checkout: the versions still say what ran
    return {"versions": versions, "git": code}


def current_choices() -> dict:
    from hydra.core.hydra_config import HydraConfig

    return dict(HydraConfig.get().runtime.choices) if HydraConfig.initialized() else {}


def command_line_values() -> dict:
    """key=value overrides of this run (a sweep's swept keys among them), for HPARAMS."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return {}
    out = {}
    for item in HydraConfig.get().overrides.task:
        key, _, value = item.lstrip("+~").partition("=")
        if "/" in value or key in ("optuna_trial", "output_dir"):
            continue  # paths and bookkeeping are no hyperparameters
        try:
            out[key] = float(value) if any(c in value for c in ".e") else int(value)
        except ValueError:
            out[key] = value
    return out


def find_lr(cfg: DictConfig, model, dm, run_dir: Path) -> float:
    """Lightning's learning-rate range test; the plot goes to lr_find.png and TensorBoard."""
    from lightning.pytorch.tuner import Tuner
    from torch.utils.tensorboard import SummaryWriter

    t = cfg.tune_lr
    plugins, replaced = trainer_plugins(cfg.trainer)
    trainer = instantiate(cfg.trainer, logger=False, callbacks=[], enable_checkpointing=False,
                          plugins=plugins, **replaced,
                          enable_model_summary=False, max_epochs=-1, max_steps=t.num_training,
                          limit_val_batches=0)
    # (epochs unbounded: the test's own step count ends it, even on a small training set)
    finder = Tuner(trainer).lr_find(model, datamodule=dm, min_lr=t.min_lr, max_lr=t.max_lr,
                                    num_training=t.num_training, update_attr=False)
    suggestion = finder.suggestion()
    if suggestion is None:
        raise ConfigError(f"the lr range test found no clear descent over tune_lr.num_training="
                          f"{t.num_training} steps; try more steps or another min_lr/max_lr")
    fig = finder.plot(suggest=True)
    fig.savefig(run_dir / "lr_find.png", dpi=120)
    with SummaryWriter(str(run_dir / "tensorboard")) as writer:
        writer.add_figure("tune/lr_find", fig)
    (run_dir / "lr_find.json").write_text(json.dumps(
        {"suggestion": suggestion, "lr": finder.results["lr"], "loss": finder.results["loss"]}))
    print(f"suggested lr: {suggestion:.3g} (plot: {run_dir / 'lr_find.png'})")
    return float(suggestion)


def training_length(cfg: DictConfig, rows: int) -> tuple[dict, dict]:
    """Trainer arguments for how long to train and how often to validate, and their record for
    metrics.json: the budget rule (bertlab.budget) unless max_epochs or trainer.max_steps is given."""
    t = cfg.trainer
    max_steps = t.get("max_steps")
    if cfg.max_epochs is not None or max_steps not in (None, -1):
        given = {"max_epochs": cfg.max_epochs, "max_steps": max_steps if max_steps is not None else -1,
                 "val_check_interval": t.get("val_check_interval") or 1.0}
        return given, {**given, "rows": rows, "why": "given: " + ", ".join(
            f"{k}={v}" for k, v in given.items() if k != "val_check_interval" and v not in (None, -1))}
    devices = t.get("devices", 1)
    processes = devices if isinstance(devices, int) and devices > 0 else 1
    b = plan(rows, cfg.batch_size, int(t.get("accumulate_grad_batches") or 1), processes,
             **OmegaConf.to_container(cfg.budget))
    args = {"max_epochs": b.epochs, "max_steps": b.max_steps,
            "val_check_interval": t.get("val_check_interval") or b.val_check_interval}
    return args, {**b.as_dict(), "val_check_interval": args["val_check_interval"]}


def train(cfg: DictConfig, tune_lr: bool = False) -> float:
    """Train as `cfg` says; returns the monitored metric of the best checkpoint (for sweepers).

    With `tune_lr`, first run the learning-rate range test; then stop there, or train with the
    suggested lr when `tune_lr.apply` is true.
    """
    started = time.time()
    check_config(cfg)
    run_dir = Path(cfg.output_dir)
    if cfg.get("cv") and cfg.get("cv_fold") is None:  # k-fold: one run per fold, inside this one
        if cfg.get("resume") or tune_lr:
            raise ConfigError(f"cv={cfg.cv} runs cannot be {'resumed' if cfg.get('resume') else 'tuned'}"
                              f"; start the cross-validation again")
        from bertlab.cv import cross_validate

        claim_run_dir(run_dir)
        return cross_validate(cfg, train)
    resume_ckpt, resume_step = None, 0
    if cfg.get("resume"):
        before = recorded(run_dir)
        if in_multirun() and before.get("status") in FINISHED:
            log.info("resume: %s finished before; not run again", run_dir)
            return before.get(cfg.monitor, math.nan)
        resume_ckpt, resume_step = resume_point(run_dir, before.get("status"))
        run_dir.mkdir(parents=True, exist_ok=True)
        log.info("resuming %s from %s", run_dir, f"step {resume_step}" if resume_ckpt
                 else "the start (no checkpoint was saved)")
    else:
        claim_run_dir(run_dir)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # no fork warnings, no oversubscription
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    threads = fair_threads()
    if threads:
        torch.set_num_threads(threads)
    log.info("torch threads: %d", torch.get_num_threads())
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).handlers.clear()  # Hydra's handlers (console, train.log) print
        logging.getLogger(name).propagate = True  # each line once
    datasets.disable_progress_bars()  # tokenizing is quick; the training bar is the one to watch

    dm = from_config(cfg)
    dm.setup("fit")
    log.info("task %s, %s", dm.task, ", ".join(f"{s}: {len(d)} rows" for s, d in dm.dataset.items()))
    cfg.monitor, cfg.mode = resolve_monitor(cfg.monitor, cfg.mode, dm.task)
    length, budget = training_length(cfg, len(dm.dataset["train"]))
    log.info("budget: %s (max_epochs=%s, max_steps=%s, val_check_interval=%s)", budget["why"],
             length["max_epochs"], length["max_steps"], length["val_check_interval"])
    precision, why = choose_precision(str(cfg.trainer.get("precision")), hardware(uses_cuda(cfg.trainer)))
    log.info("precision: %s (%s); lr %g%s", precision, why, cfg.lr,
             "" if cfg.lr == cfg.model.get("lr") else f" (the model's own: {cfg.model.get('lr')})")
    cfg.trainer.precision = precision
    if dm.task != "regression":
        (run_dir / "labels.json").write_text(json.dumps(dict(enumerate(dm.labels)), indent=1))

    plain = lambda node: OmegaConf.to_container(node, resolve=True)  # noqa: E731
    counts = None
    if dm.task == "classification":
        counts = torch.bincount(torch.tensor(list(dm.dataset["train"]["labels"])),
                                minlength=len(dm.labels)).tolist()
    model = TextClassifier(model=plain(cfg.model), task=dm.task, labels=dm.labels,
                           loss=plain(cfg.loss), optimizer=plain(cfg.optimizer),
                           scheduler=plain(cfg.scheduler), max_length=cfg.max_length,
                           clean=list(cfg.data.clean), class_counts=counts,
                           l1=float(cfg.get("regularization", {}).get("l1") or 0.0))
    if tune_lr:
        lr = find_lr(cfg, model, dm, run_dir)
        if not cfg.tune_lr.apply:
            return lr
        cfg.lr = model.hparams.optimizer["lr"] = lr
    if resume_ckpt is None and not (run_dir / "provenance.json").exists():  # a new run
        (run_dir / ".hydra").mkdir(exist_ok=True)
        if cfg.get("resume"):  # a sweep job that never started: Hydra wrote its records aside
            copy_hydra_records(run_dir / ".hydra")
        OmegaConf.save(cfg, run_dir / ".hydra" / "config.yaml", resolve=True)
        (run_dir / "provenance.json").write_text(json.dumps(provenance(), indent=1))
    else:  # what ran the resumed part, beside what ran the first one
        record = json.loads((run_dir / "provenance.json").read_text())
        record.setdefault("resumed", []).append({"at": time.strftime("%Y-%m-%dT%H:%M:%S"),
                                                 "from_step": resume_step, **provenance()})
        (run_dir / "provenance.json").write_text(json.dumps(record, indent=1))

    weight = getattr(model.loss_fn, "weight", None)  # class weights, if any
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c]
    if cfg.model.get("unfreeze_at_epoch") is not None:
        callbacks.append(UnfreezeAt(cfg.model.unfreeze_at_epoch))
    if cfg.get("optuna_trial") is not None:  # a trial of hparams_search: report the curve
        from hydra.core.hydra_config import HydraConfig

        from bertlab.callbacks.optuna_pruning import OptunaPruning

        hc = HydraConfig.get()
        callbacks.append(OptunaPruning(hc.sweep.dir, hc.sweeper.study_name, cfg.optuna_trial,
                                       cfg.monitor, OmegaConf.to_container(hc.sweeper.pruner)))
    # resumed: TensorBoard hides what the interrupted part logged after the checkpoint
    extra = {"purge_step": resume_step} if cfg.get("resume") else {}
    logger = instantiate(cfg.logger, **extra) if cfg.get("logger") else False
    plugins, replaced = trainer_plugins(cfg.trainer)  # atomic checkpoints; bf16 with fused steps
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=logger, plugins=plugins,
                          **{**replaced, **length})
    fit_start = time.time()
    diverged = None
    try:
        trainer.fit(model, datamodule=dm, ckpt_path=resume_ckpt, weights_only=True)
    except SIGTERMException:
        interrupted(run_dir, trainer)
    except Diverged as e:
        diverged = str(e)
    fit_seconds = round(time.time() - fit_start, 1)  # training, with its per-epoch validation
    fit = {k: float(v) for k, v in trainer.callback_metrics.items()}  # the last epoch's

    best = getattr(trainer.checkpoint_callback, "best_model_path", "") or None
    stopped_by = f"divergence: {diverged}" if diverged else stop_reason(trainer)
    if any(getattr(c, "pruned", False) for c in trainer.callbacks):
        stopped_by = "pruned by the hyperparameter search"
    status = ("diverged" if stopped_by.startswith("divergence") else
              "pruned" if stopped_by.startswith("pruned") else "finished")
    metrics = {"status": status,
               "task": dm.task, "monitor": cfg.monitor, "stopped_by": stopped_by,
               "epochs": trainer.current_epoch, "steps": trainer.global_step,
               "best_checkpoint": os.path.relpath(best, run_dir) if best else None,
               "best_epoch": torch.load(best, map_location="cpu", weights_only=True,
                                        mmap=True)["epoch"] if best else None,
               "fit": diagnose(fit, dm.task, counts),
               "parameters": {"total": total, "trainable_at_start": trainable},
               "data": {"rows": {s: len(d) for s, d in dm.dataset.items()}, **dm.report},
               "loss": {"name": type(model.loss_fn).__name__, "class_weights": None if weight
                        is None else [round(w, 4) for w in weight.tolist()]},
               "budget": budget, "precision": {"value": precision, "why": why},
               "lr": {"value": cfg.lr, "model_recommends": cfg.model.get("lr")}}
    log.info("fit: %s", metrics["fit"])
    if best or not diverged:  # after a NaN loss, only a checkpoint from before it is worth scoring
        for results in (trainer.validate(model, datamodule=dm, ckpt_path=best, verbose=False),
                        trainer.test(model, datamodule=dm, ckpt_path=best, verbose=False)
                        if "test" in dm.dataset else []):
            metrics.update(results[0] if results else {})  # none with limit_*_batches=0
    score = metrics.get(cfg.monitor, float("nan"))
    score = score if math.isfinite(score) else float("nan")
    if not trainer.is_global_zero:  # DDP: the other processes only helped compute
        return score
    pruning = [c for c in trainer.callbacks if isinstance(c, EncoderPruning)]
    if pruning:
        metrics["pruning"] = {**pruning[0].report, "after": {cfg.monitor: metrics[cfg.monitor]}}
        log.info("pruning: %s", metrics["pruning"])
    writer = logger.experiment if logger else None
    if best or not diverged:
        metrics["analysis"] = analyse(model, dm, "validation", run_dir, writer, trainer.global_step)
    metrics["wall_seconds"] = round(time.time() - started, 1)
    metrics["fit_seconds"] = fit_seconds
    metrics["train_seconds"] = round(fit_seconds - model.fit_validation_seconds, 1)  # no validation
    finite = {k: None if isinstance(v, float) and not math.isfinite(v) else v  # strict JSON
              for k, v in metrics.items()}
    (run_dir / "metrics.json").write_text(json.dumps(finite, indent=1, allow_nan=False))
    finals = {k: v for k, v in metrics.items() if "/" in k}
    log.info("final: %s", ", ".join(f"{k}={v:.4f}" for k, v in finals.items()))
    if metrics["status"] == "diverged":
        log.warning("training diverged (%s); lower lr or keep gradient clipping on", stopped_by)
    if logger:
        if pruning:
            logger.log_metrics({f"pruning/{k}": v for k, v in (
                ("before", pruning[0].report["before"][cfg.monitor]),
                ("after", metrics[cfg.monitor])) if v is not None}, step=trainer.global_step)
        params = {**command_line_values(), **readable_hparams(cfg, current_choices())}
        write_hparams(logger, params, finals)
    return score
