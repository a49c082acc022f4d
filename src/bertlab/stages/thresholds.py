"""Multi-label decisions (data.thresholds): after a multi-label run trains, the probability above
which each label is predicted is chosen on the validation split: `tuned` (the default) takes,
per label, the threshold that maximises that label's F1 (so the macro-F1 too); `global` one
threshold for all labels; a number fixes it. thresholds.json beside the checkpoint keeps them for
eval, predict, the server and the exports. They apply to the probabilities predict reports
(calibrated ones after calibrate=true). Hand-written: torchmetrics scores a threshold but chooses
none, and the exact search is a sort and a cumulative sum."""
from __future__ import annotations

import logging
import math
from pathlib import Path

import torch

from bertlab.errors import ConfigError
from bertlab.files import write_beside_checkpoint
from bertlab.models.checkpoints import THRESHOLDS as FILE  # beside checkpoints/

log = logging.getLogger(__name__)

MODES = ("tuned", "global")


def parse(value) -> str | float | None:
    """data.thresholds: None (tuned on multi-label runs), tuned, global, or a number in (0, 1)."""
    if value is None or value in MODES:
        return value
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not 0 < number < 1:
        raise ConfigError(f"data.thresholds={value!r} is not valid; use tuned, global or a "
                          f"probability in (0, 1) such as 0.3")
    return number


def check(cfg, dm) -> None:
    """Before training: a valid setting, and only on a multi-label task."""
    value = parse(cfg.data.get("thresholds"))
    if value is not None and not dm.task.multi_hot:
        raise ConfigError(f"data.thresholds={value} sets multi-label decisions; this run's task is "
                          f"{dm.task} (drop data.thresholds)")


def per_label(scores: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """For each label (column), the threshold t maximising the F1 of `scores > t`: the exact best
    over every cut between two distinct scores (a midpoint); 0.5 for a label with no positives."""
    n, labels = scores.shape
    ordered, order = scores.float().sort(0, descending=True)
    hits = target.float().gather(0, order).cumsum(0)  # true positives when the top k are predicted
    positives = hits[-1]
    k = torch.arange(1, n + 1, dtype=torch.float32).unsqueeze(1)
    f1 = 2 * hits / (k + positives)
    cut = torch.ones_like(f1, dtype=torch.bool)  # a cut after row k-1 only between distinct scores
    cut[:-1] = ordered[:-1] > ordered[1:]
    f1 = torch.where(cut, f1, torch.full_like(f1, -1.0))
    best = f1.argmax(0)  # the highest threshold among equals
    below = torch.where(best + 1 < n, ordered[(best + 1).clamp(max=n - 1), torch.arange(labels)],
                        torch.zeros(labels))
    chosen = (ordered[best, torch.arange(labels)] + below) / 2
    return torch.where(positives > 0, chosen, torch.full_like(chosen, 0.5))


def macro_f1(decided: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Macro-F1 of 0/1 decisions [..., rows, labels] (0 for a label never true nor predicted)."""
    tp = (decided * target).sum(-2)
    wrong = (decided != target).float().sum(-2)
    return (2 * tp / (2 * tp + wrong).clamp(min=1)).mean(-1)


def one_for_all(scores: torch.Tensor, target: torch.Tensor, candidates: int = 512) -> torch.Tensor:
    """The single threshold maximising macro-F1 over (up to `candidates` quantiles of) the cuts
    between distinct scores."""
    values = scores.float().flatten().unique()
    cuts = (values[:-1] + values[1:]) / 2 if len(values) > 1 else torch.tensor([0.5])
    if len(cuts) > candidates:
        cuts = cuts[torch.linspace(0, len(cuts) - 1, candidates).round().long()]
    target = target.float()
    best, best_f1 = 0.5, -1.0
    for chunk in cuts.split(64):  # [cuts, rows, labels] a chunk at a time
        f1 = macro_f1((scores.float() > chunk[:, None, None]).float(), target)
        i = int(f1.argmax())
        if float(f1[i]) > best_f1:
            best, best_f1 = float(chunk[i]), float(f1[i])
    return torch.full((scores.shape[1],), best)


def choose(value, scores: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    value = parse(value)
    if value in (None, "tuned"):
        return per_label(scores, target)
    if value == "global":
        return one_for_all(scores, target)
    return torch.full((scores.shape[1],), value)


def fit(model, dm, run_dir: Path, checkpoint: str | None, value) -> dict:
    """Choose the thresholds on the validation split, score them beside 0.5 (validation, and test
    if any), and write thresholds.json for `checkpoint`; sets model.thresholds."""
    from bertlab.models.scoring import decide, predicted, score

    splits = {"val": "validation", **({"test": "test"} if "test" in dm.dataset else {})}
    found = {}
    for name, split in splits.items():
        found[name] = predicted(model, dm.eval_dataloader(split))  # (calibrated, if it was)
    t = [round(x, 6) for x in choose(value, *found["val"]).tolist()]
    labels = list(model.hparams.labels)
    value = parse(value)
    method = "fixed" if isinstance(value, float) else value or "tuned"
    report = {"method": method, "thresholds": dict(zip(labels, t))}
    at_half = {}
    for name, (scores, target) in found.items():
        for key, v in score(model.task, len(labels), name, decide(scores, t), target).items():
            report[key] = round(v, 4)
        for key, v in score(model.task, len(labels), name, scores, target).items():
            at_half[key] = round(v, 4)
    report["at_0.5"] = at_half
    write_beside_checkpoint(run_dir, FILE, checkpoint, report)
    model.thresholds = t
    return report


def fold_into_head(net: torch.nn.Module, thresholds: list[float]) -> None:
    """Shift each label's output bias by -logit(threshold), so that in an exported Hugging Face
    model sigmoid > 0.5 (pipeline(function_to_apply="sigmoid")) is the run's decision."""
    from bertlab.models.network import output_layer

    t = torch.tensor(thresholds).clamp(1e-6, 1 - 1e-6)
    with torch.no_grad():
        output_layer(net).bias -= torch.logit(t).to(net.dtype)


class Thresholds:
    """Multi-label decisions (data.thresholds), a post-training stage (stages/__init__.py)."""
    name = "thresholds"

    def check(self, cfg, dm) -> None:
        check(cfg, dm)

    def wanted(self, cfg, dm) -> bool:
        return dm.task.multi_hot

    def run(self, model, dm, run_dir: Path, best: str | None, cfg) -> dict:
        chosen = fit(model, dm, run_dir, best, cfg.data.get("thresholds"))
        log.info("thresholds (%s): %s; val/f1 %.4f (0.5: %.4f)", chosen["method"],
                 chosen["thresholds"], chosen["val/f1"], chosen["at_0.5"]["val/f1"])
        return chosen
