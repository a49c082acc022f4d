"""Error analysis of one split: confusion matrix, per-class report, and the worst mistakes."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torchmetrics.functional as tmf  # noqa: E402

from bertlab.files import write_csv  # noqa: E402
from bertlab.task import Task  # noqa: E402
from bertlab.models.scoring import decide, predicted  # noqa: E402


def per_class_report(preds, target, labels: list[str], task: Task) -> list[dict]:
    n = len(labels)
    kw = dict(num_labels=n) if task.multi_hot else dict(num_classes=n)
    kind = "multilabel" if task.multi_hot else "multiclass"
    cols = {name: getattr(tmf.classification, f"{kind}_{name}")(preds, target, average=None, **kw)
            for name in ("precision", "recall", "f1_score")}
    support = target.sum(0).long() if task.multi_hot else torch.bincount(target, minlength=n)
    rows = [{"label": label, "precision": round(float(cols["precision"][i]), 4),
             "recall": round(float(cols["recall"][i]), 4),
             "f1": round(float(cols["f1_score"][i]), 4), "support": int(support[i])}
            for i, label in enumerate(labels)]
    rows.append({"label": "macro avg", **{k: round(sum(r[k] for r in rows) / n, 4)
                                          for k in ("precision", "recall", "f1")},
                 "support": int(target.shape[0])})
    return rows


def confusion_figure(cm: torch.Tensor, labels: list[str]):
    fig, ax = plt.subplots(figsize=(1.2 + 0.8 * len(labels), 1 + 0.7 * len(labels)))
    ax.imshow(cm, cmap="Blues")
    ax.set(xticks=range(len(labels)), yticks=range(len(labels)), xlabel="predicted",
           ylabel="true", title="confusion matrix")
    ax.set_xticklabels(labels, rotation=45, ha="right")
    ax.set_yticklabels(labels)
    for (i, j), count in zip(torch.cartesian_prod(torch.arange(len(labels)),
                                                  torch.arange(len(labels))).tolist(),
                             cm.flatten().tolist()):
        ax.text(j, i, count, ha="center", va="center",
                color="white" if count > cm.max() / 2 else "black")
    fig.tight_layout()
    return fig


def scatter_figure(scores: torch.Tensor, target: torch.Tensor):
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.scatter(target, scores, s=6, alpha=0.5)
    lo, hi = float(min(target.min(), scores.min())), float(max(target.max(), scores.max()))
    ax.plot([lo, hi], [lo, hi], color="grey", linewidth=1)
    ax.set(xlabel="true", ylabel="predicted", title="predicted vs true")
    fig.tight_layout()
    return fig


def analyse(model, dm, split: str, out_dir: Path, writer=None, step: int = 0) -> dict:
    """Write the analysis of `split` into `out_dir` (and TensorBoard); returns its file names."""
    texts = dm.eval_texts(split)
    scores, target = predicted(model, dm.eval_dataloader(split))
    labels = list(model.hparams.labels)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {}
    if not model.task.has_classes:
        fig = scatter_figure(scores, target)
        error = (scores - target).abs()
        rows = [{"text": texts[i], "true": round(float(target[i]), 4),
                 "predicted": round(float(scores[i]), 4), "abs_error": round(float(error[i]), 4)}
                for i in error.argsort(descending=True).tolist()]
        files["plot"] = "predicted_vs_true.png"
    else:
        if not model.task.multi_hot:
            preds = scores.argmax(-1)
            cm = tmf.confusion_matrix(preds, target, task="multiclass", num_classes=len(labels))
            fig = confusion_figure(cm, labels)
            files["plot"] = "confusion_matrix.png"
            confidence = scores.max(-1).values
            wrong = (preds != target).nonzero().flatten()
            rows = [{"text": texts[i], "true": labels[target[i]], "predicted": labels[preds[i]],
                     "confidence": round(float(confidence[i]), 4)}
                    for i in wrong[confidence[wrong].argsort(descending=True)].tolist()]
        else:
            fig = None
            preds = decide(scores, getattr(model, "thresholds", None) or 0.5).long()
            target = target.long()
            miss = (scores - target).abs().max(-1).values
            wrong = (preds != target).any(-1).nonzero().flatten()
            names = lambda row: "|".join(n for n, v in zip(labels, row) if v)  # noqa: E731
            rows = [{"text": texts[i], "true": names(target[i]), "predicted": names(preds[i]),
                     "worst_miss": round(float(miss[i]), 4)}
                    for i in wrong[miss[wrong].argsort(descending=True)].tolist()]
        write_csv(out_dir / "classification_report.csv",
                  per_class_report(preds, target, labels, model.task))
        files["report"] = "classification_report.csv"
    if rows:
        write_csv(out_dir / "errors.csv", rows)
        files["errors"] = "errors.csv"
    if fig is not None:  # drawn once for the file and TensorBoard (add_figure would draw it again)
        fig.set_dpi(120)
        fig.canvas.draw()
        image = np.asarray(fig.canvas.buffer_rgba())
        plt.imsave(out_dir / files["plot"], image, dpi=fig.dpi)  # (what savefig does after drawing)
        if writer is not None:
            writer.add_image(f"{'val' if split == 'validation' else split}/{Path(files['plot']).stem}",
                             image[..., :3], step, dataformats="HWC")
        plt.close(fig)
    return files
