"""TextClassifier: a Hugging Face sequence-classification model + configurable loss + torchmetrics."""
from __future__ import annotations

import lightning as L
import torch
import torchmetrics as tm
from hydra.utils import instantiate
from torch import nn
from transformers import AutoConfig, AutoModelForSequenceClassification

from bertlab.hub import from_pretrained
from bertlab.models.losses import build_loss

PROBLEM_TYPES = {"classification": "single_label_classification",
                 "multilabel": "multi_label_classification", "regression": "regression"}


def build_network(cfg: dict, task: str, labels: list[str]) -> nn.Module:
    """A Hugging Face *ForSequenceClassification model: the encoder plus its standard head.

    Standard, so that an export is a plain Hugging Face folder that `pipeline()` loads.
    `pretrained=false` gives random weights of the same (or an overridden) shape.
    """
    names = {} if task == "regression" else {
        "id2label": dict(enumerate(labels)), "label2id": {n: i for i, n in enumerate(labels)}}
    config = from_pretrained(AutoConfig, cfg["name_or_path"], num_labels=max(1, len(labels)),
                             problem_type=PROBLEM_TYPES[task], **names,
                             **cfg.get("config_overrides", {}))
    if cfg.get("pretrained", True):
        net = from_pretrained(AutoModelForSequenceClassification, cfg["name_or_path"],
                              config=config)
    else:
        net = AutoModelForSequenceClassification.from_config(config)
    return net.train()  # from_pretrained returns eval mode, which would switch dropout off


def build_metrics(task: str, num_labels: int, stage: str) -> tm.MetricCollection:
    if task == "regression":
        metrics = {"mse": tm.MeanSquaredError(), "mae": tm.MeanAbsoluteError(),
                   "pearson": tm.PearsonCorrCoef(), "spearman": tm.SpearmanCorrCoef()}
    elif task == "multilabel":
        metrics = {"acc": tm.classification.MultilabelAccuracy(num_labels),
                   "f1": tm.classification.MultilabelF1Score(num_labels, average="macro")}
    else:
        metrics = {"acc": tm.classification.MulticlassAccuracy(num_labels, average="micro"),
                   "f1": tm.classification.MulticlassF1Score(num_labels, average="macro")}
    return tm.MetricCollection(metrics, prefix=f"{stage}/")


class TextClassifier(L.LightningModule):
    """A BERT-family classifier (single- or multi-label) or regressor.

    Every argument is a plain value saved in the checkpoint, so a checkpoint alone rebuilds the
    model, its tokenizer settings and its label names.
    """

    def __init__(self, model: dict, task: str, labels: list[str], loss: dict, optimizer: dict,
                 scheduler: dict, max_length: int = 128, clean: list[str] = ()) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.task = task
        self.num_labels = 1 if task == "regression" else len(labels)
        self.net = build_network(model, task, labels)
        self.loss_fn = build_loss(loss, task)
        self.train_metrics = build_metrics(task, self.num_labels, "train")
        self.val_metrics = build_metrics(task, self.num_labels, "val")
        self.test_metrics = build_metrics(task, self.num_labels, "test")

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        kwargs = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
        logits = self.net(input_ids=input_ids, attention_mask=attention_mask, **kwargs).logits
        return logits.squeeze(-1) if self.task == "regression" else logits

    def step(self, batch: dict, stage: str) -> torch.Tensor:
        labels = batch.pop("labels")
        logits = self(**batch)
        if self.task == "classification":
            loss, preds, target = self.loss_fn(logits, labels), logits, labels
        elif self.task == "multilabel":
            loss = self.loss_fn(logits, labels.float())
            preds, target = torch.sigmoid(logits), labels.int()
        else:
            loss = self.loss_fn(logits.float(), labels.float())
            preds, target = logits.float(), labels.float()
        n = labels.shape[0]
        self.log(f"{stage}/loss", loss, on_step=stage == "train", on_epoch=True,
                 prog_bar=stage != "test", batch_size=n)
        metrics = getattr(self, f"{stage}_metrics")
        metrics.update(preds.detach(), target)
        self.log_dict(metrics, on_step=False, on_epoch=True, batch_size=n)
        return loss

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self.step(batch, "train")

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self.step(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self.step(batch, "test")

    def configure_optimizers(self):
        # No weight decay on biases and LayerNorm weights (the 1-D parameters), as in BERT.
        params = [p for p in self.parameters() if p.requires_grad]
        groups = [{"params": [p for p in params if p.ndim >= 2]},
                  {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
        optimizer = instantiate(self.hparams.optimizer)(groups)
        sched = dict(self.hparams.scheduler)
        warmup = sched.pop("warmup", 0)
        total = int(self.trainer.estimated_stepping_batches)
        warmup_steps = round(warmup * total) if warmup < 1 else int(warmup)
        scheduler = instantiate(sched)(optimizer=optimizer, num_warmup_steps=warmup_steps,
                                       num_training_steps=total)
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
