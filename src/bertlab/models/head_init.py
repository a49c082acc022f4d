"""model.head_init=probe: the head starts as a logistic regression fitted on the frozen encoder's
mean-pooled vectors of the training rows, then the whole network fine-tunes ("LP-FT", Kumar et
al. 2022, *Fine-Tuning can Distort Pretrained Features and Underperform Out-of-Distribution*).
model.head_refit: after fine-tuning, the same fit again on the fine-tuned encoder's vectors.
scikit-learn fits the regression; the copy into the head is ours (no library does it)."""
from __future__ import annotations

import logging

import torch

from bertlab.errors import ConfigError
from bertlab.models.network import pools_mean, sentence_vector, unwrapped
from bertlab.models.scoring import no_worse, validation_score

log = logging.getLogger(__name__)


def applies(net, dm, task) -> bool:
    """Whether the probe can fit this head: single-label classes read from mean pooling, one
    window per text (model.head_init=auto fits it exactly there)."""
    return pools_mean(net) and task.has_classes and not task.multi_hot and not dm.windows


@torch.no_grad()
@torch.compiler.set_stance("force_eager")  # one pass: with model.compile, a graph of its own to build
def probe_head(net, dm, task) -> dict:
    """Fit the head of `net` (model.pooling=mean, single-label classification) to the training
    rows of `dm`; returns metrics.json's record."""
    from sklearn.linear_model import LogisticRegression

    if not applies(net, dm, task):
        raise ConfigError("model.head_init=probe is for single-label classification with "
                          "model.pooling=mean (auto picks it under model.auto_mean_rows rows), "
                          "without data.long_text=window; use model.head_init=null")
    hf = unwrapped(net)
    was_training = hf.training
    hf.eval()
    xs, ys = [], []
    for batch in dm.eval_dataloader("train"):
        keep = (batch["labeled"].bool() if "labeled" in batch
                else torch.ones(len(batch["labels"]), dtype=torch.bool))
        xs.append(sentence_vector(hf, batch["input_ids"], batch["attention_mask"])[keep])
        ys.append(batch["labels"][keep])
    hf.train(was_training)
    x, y = torch.cat(xs).double().numpy(), torch.cat(ys).numpy()
    probe = LogisticRegression(max_iter=2000).fit(x, y)
    head = hf.classifier
    weight = torch.zeros_like(head.weight, dtype=torch.float64)
    bias = torch.zeros_like(head.bias, dtype=torch.float64)
    coef, intercept = torch.from_numpy(probe.coef_), torch.from_numpy(probe.intercept_)
    if len(probe.classes_) == 2 and coef.shape[0] == 1:  # one logit difference: split it evenly
        coef, intercept = torch.cat([-coef / 2, coef / 2]), torch.cat([-intercept / 2, intercept / 2])
    for row, label in enumerate(probe.classes_):
        weight[int(label)], bias[int(label)] = coef[row], intercept[row]
    head.weight.copy_(weight.to(head.weight.dtype))
    head.bias.copy_(bias.to(head.bias.dtype))
    return {"method": "probe", "rows": len(y), "train_accuracy": round(float(probe.score(x, y)), 4)}


def refit_wanted(setting, net, dm, task) -> bool:
    """model.head_refit: auto refits wherever the probe can fit the head, true there too (and is
    refused elsewhere, before training), false or null never."""
    if setting is True and not applies(net, dm, task):
        raise ConfigError("model.head_refit=true refits a head that reads mean pooling on "
                          "single-label classes (model.pooling=mean, no data.long_text=window); "
                          "use model.head_refit=auto or false")
    return setting in (True, "auto") and applies(net, dm, task)


def refit_head(trainer, model, dm, best: str, monitor: str, mode: str, guard: bool) -> dict:
    """model.head_refit: after fine-tuning, the head of `best` fitted again as a logistic
    regression on the fine-tuned encoder's vectors of the training rows (as SetFit fits its head
    after training the body) and written back into `best`. `guard` (a validation split the
    budget trusts): kept only if `monitor` on the validation split is no worse; without it the
    refit is kept (measured: benchmarks/RESULTS.md, "Few labels"). Returns metrics.json's record."""
    checkpoint = torch.load(best, map_location="cpu", weights_only=True)
    model.load_state_dict(checkpoint["state_dict"])
    head = unwrapped(model.net).classifier
    before = {k: v.clone() for k, v in head.state_dict().items()}
    validated = "validation" in dm.dataset  # (none: too small a split to carve, its rows trained)
    val_before = validation_score(trainer, model, dm, monitor) if validated else None
    record = {**probe_head(model.net, dm, dm.task), "method": "refit"}
    val_after = validation_score(trainer, model, dm, monitor) if validated else None
    kept = not guard or no_worse(val_after, val_before, mode)
    if kept and trainer.is_global_zero:
        checkpoint["state_dict"] = model.state_dict()
        trainer.strategy.checkpoint_io.save_checkpoint(checkpoint, best)
    trainer.strategy.barrier()
    if not kept:
        head.load_state_dict(before)
    rounded = lambda v: None if v is None else round(v, 4)  # noqa: E731
    log.info("head_refit: %s %s before, %s after: %s", monitor, rounded(val_before),
             rounded(val_after), "kept" if kept else "not kept (worse on the validation split)")
    return {**record, "monitor": monitor, "val_before": rounded(val_before),
            "val_after": rounded(val_after), "kept": kept,
            "why": "kept if no worse on the validation split" if guard else
                   "kept: the validation split is too small to judge by (budget.trust_val_rows)"}
