"""A model's answers over a data loader, and their metrics: what training's stages (calibration,
thresholds, cross-validation), eval and the error analysis all score with."""
from __future__ import annotations

import torch

from bertlab.data.windows import first_of_each, pool
from bertlab.task import Task, task_of


def score(task: str | Task, num_labels: int, stage: str, scores: torch.Tensor,
          target: torch.Tensor) -> dict[str, float]:
    """`stage/metric` values of `scores` (from collect) against `target`."""
    task = task_of(task)
    metrics = task.build_metrics(num_labels, stage)
    metrics.update(*task.metric_inputs(scores, target))
    return {k: float(v) for k, v in metrics.compute().items()}


@torch.no_grad()  # not inference_mode: with model.compile, validation's no_grad graph serves again
def collect(model, loader, logits: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores (probabilities, or values for regression), or the logits, and targets over
    `loader`, in order; with windows (long_text=windows), one row per document, in document
    order, its windows' logits pooled."""
    was_training = model.training
    model.eval()
    outs, targets, docs = [], [], []
    for batch in loader:
        batch = {k: v.to(model.device) for k, v in batch.items()}
        labels, doc = batch.pop("labels"), batch.pop("doc", None)
        batch.pop("window", None)
        outs.append(model(**batch).float().cpu())
        targets.append(labels.cpu())
        if doc is not None:
            docs.append(doc.cpu())
    model.train(was_training)
    out, target = torch.cat(outs), torch.cat(targets)
    if docs:
        doc = torch.cat(docs)
        out, target = pool(out, doc, model.hparams["windows"]["pool"])[0], first_of_each(target, doc)
    return out if logits else model.task.scores(out), target


def predicted(model, loader) -> tuple[torch.Tensor, torch.Tensor]:
    """collect's scores as predict gives them: after the run's temperature (calibrate=true)."""
    logits, target = collect(model, loader, logits=True)
    return model.task.scores(logits / getattr(model, "temperature", 1.0)), target


def decide(scores: torch.Tensor, thresholds) -> torch.Tensor:
    """0/1 decisions: each label's probability above its threshold."""
    return (scores > torch.as_tensor(thresholds, dtype=scores.dtype)).float()


def validation_score(trainer, model, dm, monitor: str) -> float:
    """`monitor` of `model`'s current weights on the validation split, through the Trainer (its
    metrics, its devices): what the soup and the head refit compare weights by."""
    found = trainer.validate(model, datamodule=dm, verbose=False)
    return float(found[0][monitor])


def no_worse(value: float, than: float, mode: str) -> bool:
    """Whether `value` is at least as good as `than` for a metric that improves toward `mode`."""
    return value >= than if mode == "max" else value <= than
