"""calibrate=true: temperature scaling (Guo et al., 2017, "On Calibration of Modern Neural
Networks"): one scalar T fitted on the validation split after training, by minimising the
negative log-likelihood of logits / T. Probabilities become softmax(logits / T) (sigmoid for
multi-label); decisions never change (argmax, and sigmoid > 0.5, are the same for any T > 0).
Hand-written: torchmetrics measures calibration (ECE) but fits nothing, and the fit is one
LBFGS call on one parameter."""
from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F

from bertlab.errors import ConfigError
from bertlab.files import write_beside_checkpoint
from bertlab.models.checkpoints import CALIBRATION as FILE  # beside checkpoints/
from bertlab.models.network import output_layer

log = logging.getLogger(__name__)



def check(cfg, dm) -> None:
    """Before training: calibrate=true needs class probabilities (and a validation split: the
    data refuses a run without one, and calibrate keeps a small one carved, budget.carved_val_trains)."""
    if not cfg.get("calibrate"):
        return
    if not dm.task.has_classes:
        raise ConfigError("calibrate=true calibrates class probabilities; a regression run has none "
                          "(drop calibrate)")


def collect_logits(model, loader) -> tuple[torch.Tensor, torch.Tensor]:
    from bertlab.models.scoring import collect

    logits, target = collect(model, loader, logits=True)
    return logits.clone(), target.clone()  # normal tensors: the fit differentiates through them


def nll(logits: torch.Tensor, target: torch.Tensor, multi_hot: bool) -> torch.Tensor:
    if multi_hot:
        return F.binary_cross_entropy_with_logits(logits, target.float())
    return F.cross_entropy(logits, target)


def fit_temperature(logits: torch.Tensor, target: torch.Tensor, multi_hot: bool) -> float:
    """The T > 0 that minimises the NLL of logits / T (fitted as log T, so T stays positive)."""
    log_t = torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = nll(logits / log_t.exp(), target, multi_hot)
        loss.backward()
        return loss

    opt.step(closure)
    return float(log_t.detach().exp())


def ece(logits: torch.Tensor, target: torch.Tensor, multi_hot: bool) -> float:
    """Expected calibration error (15 bins, torchmetrics); multi-label: over every (row, label)."""
    import torchmetrics.functional as tmf  # (not at import: the stage is optional)

    if multi_hot:
        return float(tmf.calibration_error(logits.sigmoid().flatten(), target.flatten().long(),
                                           task="binary", n_bins=15))
    return float(tmf.calibration_error(logits.softmax(-1), target, task="multiclass",
                                       num_classes=logits.shape[-1], n_bins=15))


def calibrate(model, dm, run_dir: Path, checkpoint: str | None) -> dict:
    """Fit T on the validation split, measure ECE and NLL before/after (validation, and test if
    any: the honest measure), and write calibration.json for `checkpoint` (predict reads it)."""
    multi_hot = model.task.multi_hot
    val_logits, val_target = collect_logits(model, dm.eval_dataloader("validation"))
    t = fit_temperature(val_logits, val_target, multi_hot)
    report = {"temperature": round(t, 4), "method": "temperature scaling on the validation split"}
    splits = {"val": (val_logits, val_target)}
    if "test" in dm.dataset:
        splits["test"] = collect_logits(model, dm.eval_dataloader("test"))
    for split, (logits, target) in splits.items():
        for name, scaled in (("before", logits), ("after", logits / t)):
            report[f"{split}/ece_{name}"] = round(ece(scaled, target, multi_hot), 4)
            report[f"{split}/nll_{name}"] = round(float(nll(scaled, target, multi_hot)), 4)
    write_beside_checkpoint(run_dir, FILE, checkpoint, report)
    return report


def fold_into_head(net: torch.nn.Module, temperature: float) -> None:
    """Divide the classification head's output layer by T, so that an exported Hugging Face model
    gives the calibrated probabilities in pipeline() with nothing else to apply."""
    head = output_layer(net)
    with torch.no_grad():
        head.weight /= temperature
        head.bias /= temperature


class Calibration:
    """calibrate=true: temperature scaling, a post-training stage (stages/__init__.py)."""
    name = "calibration"

    def check(self, cfg, dm) -> None:
        check(cfg, dm)

    def wanted(self, cfg, dm) -> bool:
        return bool(cfg.get("calibrate"))

    def run(self, model, dm, run_dir: Path, best: str | None, cfg) -> dict:
        report = calibrate(model, dm, run_dir, best)
        model.temperature = report["temperature"]
        log.info("calibration: %s", report)
        return report
