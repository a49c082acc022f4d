"""Losses from the `loss` config group; `auto` picks the usual one for the task."""
from __future__ import annotations

import torch
from hydra.utils import instantiate
from torch import nn
from torch.nn import functional as F

from bertlab.errors import ConfigError
from bertlab.task import Task, task_of


class FocalLoss(nn.Module):
    """Multi-class focal loss (Lin et al. 2017): cross-entropy scaled by (1 - p_true)^gamma.

    Written here because torch has none for several classes (torchvision's is binary only).
    """

    def __init__(self, gamma: float = 2.0, weight: torch.Tensor | None = None,
                 label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.gamma, self.label_smoothing = gamma, label_smoothing
        self.register_buffer("weight", weight)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        ce = F.cross_entropy(logits, target, weight=self.weight, reduction="none",
                             label_smoothing=self.label_smoothing)
        p_true = logits.softmax(-1).gather(1, target[:, None]).squeeze(1)
        scaled = (1 - p_true).pow(self.gamma) * ce
        norm = self.weight[target].sum() if self.weight is not None else target.numel()
        return scaled.sum() / norm


# task -> loss classes that fit it (the first is what `loss=auto` uses)
FITS: dict[str, tuple[type[nn.Module], ...]] = {
    "classification": (nn.CrossEntropyLoss, FocalLoss),
    "multilabel": (nn.BCEWithLogitsLoss,),
    "regression": (nn.MSELoss, nn.HuberLoss, nn.L1Loss),
}


def auto(task: str, weight: torch.Tensor | None = None, label_smoothing: float = 0.0) -> nn.Module:
    """Cross-entropy for classes (with class weights and label smoothing if given), BCE with
    logits for multi-label, MSE for regression: the first loss that FITS the task."""
    first = FITS[task][0]
    if first is nn.CrossEntropyLoss:
        return first(weight=weight, label_smoothing=label_smoothing)
    if label_smoothing:
        raise ConfigError(f"loss.label_smoothing works for classification, not {task}; set it to 0")
    return first()


def class_weights(spec, counts: list[int]) -> torch.Tensor:
    """`balanced` (n / (k * count), as scikit-learn's) or an explicit list, one per class."""
    k = len(counts)
    if spec == "balanced":
        n = sum(counts)
        return torch.tensor([n / (k * c) if c else 0.0 for c in counts])
    if isinstance(spec, (list, tuple)) and len(spec) == k:
        return torch.tensor([float(w) for w in spec])
    raise ConfigError(f"class_weights={spec!r} is not valid; use balanced or a list of "
                      f"{k} numbers (one per label)")


def build_loss(cfg: dict, task: str | Task, counts: list[int] | None = None,
               spec=None) -> nn.Module:
    """The `loss` block for `task`, with class weights from `spec` (top-level class_weights)."""
    cfg, task = dict(cfg), task_of(task)
    if "class_weights" in cfg:  # a checkpoint written when class_weights was a loss key
        spec = cfg.pop("class_weights")
    kwargs = {"task": task.name} if cfg["_target_"].endswith(".auto") else {}
    if spec is not None:
        if not task.has_classes or task.multi_hot:
            raise ConfigError(f"class_weights works for classification, not {task}")
        kwargs["weight"] = class_weights(spec, counts or [])
    loss = instantiate(cfg, **kwargs)
    if not isinstance(loss, FITS[task.name]):
        valid = ", ".join(c.__name__ for c in FITS[task.name])
        raise ConfigError(f"loss {type(loss).__name__} does not fit a {task} task; use loss=auto "
                          f"or one of: {valid}")
    return loss


def distillation_loss(task, student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor,
                      labeled: torch.Tensor | None, temperature: float, alpha: float,
                      hard_loss) -> tuple:
    """(total, soft, hard): alpha * soft + (1 - alpha) * hard. soft: T^2 * KL(softmax(t/T) ||
    softmax(s/T)) for classes, T^2 * BCE against sigmoid(t/T) for multi-label, MSE to the teacher's
    value for regression; hard: the run's loss on the labelled rows (0 if there are none)."""
    t = temperature
    if not task.has_classes:
        soft = F.mse_loss(student.float(), teacher.float().reshape(student.shape))
    elif task.multi_hot:
        soft = F.binary_cross_entropy_with_logits(student.float() / t,
                                                  (teacher.float() / t).sigmoid()) * t * t
    else:
        soft = F.kl_div(F.log_softmax(student.float() / t, -1),
                        F.log_softmax(teacher.float() / t, -1), reduction="batchmean",
                        log_target=True) * t * t
    mask = labeled.bool() if labeled is not None else torch.ones(len(labels), dtype=torch.bool,
                                                                 device=labels.device)
    hard = (hard_loss(*task.loss_inputs(student[mask], labels[mask])) if mask.any()
            else student.sum() * 0.0)
    return alpha * soft + (1 - alpha) * hard, soft, hard


def consistency_loss(task, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """R-Drop's term (Liang et al. 2021) between two dropout passes of one batch: the symmetric KL,
    0.5 * (KL(a||b) + KL(b||a)), of the class distributions (of each label's Bernoulli, multi-label;
    batch mean), or the mean squared difference of the two values for regression."""
    a, b = a.float(), b.float()
    if not task.has_classes:
        return F.mse_loss(a, b)
    if task.multi_hot:  # KL(p||q) of Bernoullis, from the logits: sum over {x, -x} of p * (log p - log q)
        kl = lambda x, y: (x.sigmoid() * (F.logsigmoid(x) - F.logsigmoid(y))
                           + (-x).sigmoid() * (F.logsigmoid(-x) - F.logsigmoid(-y)))
        return 0.5 * (kl(a, b) + kl(b, a)).sum(-1).mean()
    la, lb = F.log_softmax(a, -1), F.log_softmax(b, -1)
    return 0.5 * (F.kl_div(la, lb, reduction="batchmean", log_target=True)
                  + F.kl_div(lb, la, reduction="batchmean", log_target=True))
