"""The three tasks, each answering once what the rest of the code asks of it.

A run stores its task by name ("classification", "multilabel", "regression": metrics.json,
checkpoints, the data cache); `TASKS[name]` is the object that knows what the name means. No
torch at import: the command-line checks read the metric names before torch is loaded.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass


@dataclass(frozen=True, eq=False)
class Task:
    name: str
    problem_type: str      # transformers' config.problem_type
    metrics: tuple         # what each split logs besides its loss (`val/acc`, ...)
    monitor: str           # what `monitor=auto` watches
    has_classes: bool      # labels are class names (classification, multi-label)
    multi_hot: bool        # a row holds several labels at once
    stratified: bool       # carved splits and cv folds keep the class proportions

    def __str__(self) -> str:
        return self.name

    def __eq__(self, other) -> bool:  # equal to its stored name too: dm.task == "regression"
        return other is self or (isinstance(other, str) and other == self.name)

    def __hash__(self) -> int:
        return hash(self.name)

    def num_outputs(self, labels: list) -> int:
        return len(labels) if self.has_classes else 1

    def logits(self, out):
        """The network's output as the task reads it: one value per row for regression."""
        return out if self.has_classes else out.squeeze(-1)

    def scores(self, logits):
        """Probabilities (softmax over classes; a sigmoid per label) or the predicted value."""
        if self.multi_hot:
            return logits.float().sigmoid()
        return logits.float().softmax(-1) if self.has_classes else logits.float()

    def loss_inputs(self, logits, labels):
        """(logits, labels) in the dtypes the task's losses take."""
        if not self.has_classes:
            return logits.float(), labels.float()
        return (logits, labels.float()) if self.multi_hot else (logits, labels)

    def metric_inputs(self, scores, labels):
        """(preds, target) as torchmetrics wants them for this task."""
        if not self.has_classes:
            return scores.reshape(-1).float(), labels.float()
        return (scores, labels.int()) if self.multi_hot else (scores, labels)

    def build_metrics(self, num_labels: int, stage: str):
        """torchmetrics for one stage, named `stage/metric`."""
        import torchmetrics as tm

        if not self.has_classes:
            with warnings.catch_warnings():  # "will save all targets": one split's floats, known
                warnings.filterwarnings("ignore", ".*will save all targets and predictions.*")
                spearman = tm.SpearmanCorrCoef()
            metrics = {"mse": tm.MeanSquaredError(), "mae": tm.MeanAbsoluteError(),
                       "pearson": tm.PearsonCorrCoef(), "spearman": spearman}
        elif self.multi_hot:
            metrics = {"acc": tm.classification.MultilabelAccuracy(num_labels),
                       "f1": tm.classification.MultilabelF1Score(num_labels, average="macro")}
        else:
            metrics = {"acc": tm.classification.MulticlassAccuracy(num_labels, average="micro"),
                       "f1": tm.classification.MulticlassF1Score(num_labels, average="macro")}
        return tm.MetricCollection(metrics, prefix=f"{stage}/")


CLASSIFICATION = Task("classification", "single_label_classification", ("acc", "f1"),
                      "val/acc", has_classes=True, multi_hot=False, stratified=True)
MULTILABEL = Task("multilabel", "multi_label_classification", ("acc", "f1"), "val/f1",
                  has_classes=True, multi_hot=True, stratified=False)
REGRESSION = Task("regression", "regression", ("pearson", "spearman", "mse", "mae"), "val/loss",
                  has_classes=False, multi_hot=False, stratified=False)
TASKS = {t.name: t for t in (CLASSIFICATION, MULTILABEL, REGRESSION)}


def task_of(name: str | Task) -> Task:
    """The Task for a stored name (or a Task, returned as is)."""
    return name if isinstance(name, Task) else TASKS[name]
