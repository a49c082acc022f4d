"""Out-of-sample class probabilities for every training row: each row scored by a model that did
not see it. Two ways, both k-fold:
- embeddings: the encoder's mean-pooled sentence vectors and a logistic regression per fold
  (scikit-learn's cross_val_predict), minutes on a CPU;
- finetune: k fine-tuned folds (train.py cv=K), each row scored by the fold model that held it out.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch

from bertlab.data.labels import HELD_OUT
from bertlab.data.windows import first_of_each, pool
from bertlab.errors import DataError

log = logging.getLogger(__name__)

# The logistic regression's inverse regularisation, on standardised sentence vectors, is chosen
# from these by 3-fold log-loss on up to 5,000 rows: strong regularisation keeps the folds' models
# from learning the wrong labels they train on (10% flipped tweets: C=0.01), but underfits a few
# hundred rows (C=1), so no single value serves both (benchmarks/label_issues.py).
CS, CHOOSE_ON = (0.01, 0.1, 1.0), 5000


def in_row_order(dm, split: str, values: torch.Tensor) -> torch.Tensor:
    """Per-row `values` of dm.eval_dataloader(split) (length-sorted rows; with windows, documents
    already pooled in document order) back in the split's own order."""
    if dm.windows:
        return values
    out = torch.empty_like(values)
    out[torch.tensor(dm.eval_order(split))] = values
    return out


def held_out(dm) -> str:
    """The split that holds a cv fold's held-out rows: all of them, where only part validates."""
    return HELD_OUT if HELD_OUT in dm.dataset else "validation"


def rows_of(dm, split: str) -> dict:
    """The split's documents, in its order: position in the file (`row`), text, pair, label."""
    raw, labels = dm.raw[split], torch.tensor(dm.dataset[split]["labels"][:])
    rows = raw["row"][:]
    if dm.windows:
        labels = first_of_each(labels, torch.tensor(dm.dataset[split]["doc"][:]))
        rows = [r for r, w in zip(rows, raw["window"][:]) if w == 0]
    return {"row": np.asarray(rows), "text": dm.texts(split), "text_pair": dm.texts(split, "text_pair"),
            "label": labels.numpy().astype(int)}


def joined(parts: list[dict], probs: list[np.ndarray]) -> dict:
    """The parts' rows as one table, sorted by their position in the file, with their `probs`."""
    rows = np.concatenate([p["row"] for p in parts])
    order = np.argsort(rows, kind="stable")
    if len(np.unique(rows)) != len(rows):
        raise DataError("a row was scored twice: the folds overlap (is it a bertlab cv run?)")
    pick = lambda key: [v for p in parts for v in (p[key] or [None] * len(p["row"]))]  # noqa: E731
    return {"row": rows[order], "text": [pick("text")[i] for i in order],
            "text_pair": [pick("text_pair")[i] for i in order] if parts[0]["text_pair"] else None,
            "label": np.concatenate([p["label"] for p in parts])[order],
            "probs": np.concatenate(probs)[order]}


@torch.no_grad()
def sentence_vectors(encoder, dm, split: str, bf16: bool) -> np.ndarray:
    """Each document's mean-pooled last hidden state (a document of windows: their mean)."""
    encoder.eval()
    outs, docs = [], []
    for batch in dm.eval_dataloader(split):
        doc = batch.pop("doc", None)
        batch.pop("window", None)
        batch.pop("labels", None)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            hidden = encoder(**batch).last_hidden_state.float()
        mask = batch["attention_mask"].unsqueeze(-1).float()
        outs.append((hidden * mask).sum(1) / mask.sum(1).clamp(min=1))
        if doc is not None:
            docs.append(doc)
    vectors = torch.cat(outs)
    if docs:
        vectors = pool(vectors, torch.cat(docs))[0]
    return in_row_order(dm, split, vectors).numpy()


def embedding_probs(cfg, dm, folds: int) -> dict:
    """Every training row (dm: the train and held-out splits of one fold, together all rows)
    with out-of-fold probabilities of a logistic regression on the encoder's sentence vectors."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import KFold, StratifiedKFold, cross_val_predict
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from transformers import AutoModel

    from bertlab.hub import from_pretrained
    from bertlab.models.inference import inference_precision

    precision, why = inference_precision("auto", "torch")
    log.info("sentence vectors of %s (precision %s: %s)", cfg.model.name_or_path, precision, why)
    encoder = from_pretrained(AutoModel, cfg.model.name_or_path)
    splits = ("train", held_out(dm))
    table = joined([rows_of(dm, s) for s in splits],
                   [sentence_vectors(encoder, dm, s, precision == "bf16") for s in splits])
    x, y = table.pop("probs"), table["label"]
    c = 1.0 if dm.task.multi_hot else chosen_c(x, y, cfg.seed)
    if dm.task.multi_hot:  # one logistic regression per label
        model, split = OneVsRestClassifier(LogisticRegression(max_iter=1000, C=c)), KFold(
            folds, shuffle=True, random_state=cfg.seed)
    else:
        model, split = LogisticRegression(max_iter=1000, C=c), StratifiedKFold(
            folds, shuffle=True, random_state=cfg.seed)
    log.info("logistic regression (C=%g) on %d vectors of %d dimensions, %d folds", c, *x.shape, folds)
    table["probs"] = cross_val_predict(make_pipeline(StandardScaler(), model), x, y, cv=split,
                                       method="predict_proba")
    return table


def chosen_c(x: np.ndarray, y: np.ndarray, seed: int) -> float:
    """The C of CS with the best 3-fold log-loss on up to CHOOSE_ON rows."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    pick = np.random.RandomState(seed).permutation(len(x))[:CHOOSE_ON]
    folds = StratifiedKFold(min(3, int(np.bincount(y[pick]).min())), shuffle=True, random_state=seed)
    loss = {c: -cross_val_score(make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, C=c)),
                                x[pick], y[pick], cv=folds, scoring="neg_log_loss").mean() for c in CS}
    return min(loss, key=loss.get)


def finetune_probs(cv_run: Path) -> tuple[dict, object]:
    """(every row a fold held out, with that fold model's probabilities; fold 0's data module)
    from a finished cv run: each fold is a run folder whose recorded config gives its split."""
    from bertlab.cli.runs import run_config
    from bertlab.data.datamodule import from_config
    from bertlab.models.checkpoints import find_checkpoint, load_model
    from bertlab.models.scoring import collect

    record = json.loads((cv_run / "metrics.json").read_text())
    parts, probs, first = [], [], None
    for i, fold in enumerate(record["cv"]["runs"]):
        dm = from_config(run_config(cv_run / fold))
        dm.setup("fit")
        first = first or dm
        model = load_model(find_checkpoint(str(cv_run / fold)))
        split = held_out(dm)
        scores, _ = collect(model, dm.eval_dataloader(split))
        parts.append(rows_of(dm, split))
        probs.append(in_row_order(dm, split, scores).numpy())
        log.info("fold %d: %d held-out rows scored by %s", i, len(scores), cv_run / fold)
    return joined(parts, probs), first
