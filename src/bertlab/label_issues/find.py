"""find_label_issues.py: the training rows whose label looks wrong, found by confident learning
(cleanlab's find_label_issues over out-of-sample probabilities, scores.py), ranked worst first.

Writes label_issues.csv (every flagged row: its position in the file, text, given and suggested
label, cleanlab's label-quality score), label_issues.md (counts by given -> suggested class, the
worst rows) and label_issues.png (given against suggested labels), and metrics.json. Act on them
with train.py data.exclude_rows=<label_issues.csv> (or data.relabel_rows=)."""
from __future__ import annotations

import copy
import json
import logging
import time
from collections import Counter
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, open_dict

from bertlab.cli import runs
from bertlab.errors import BertlabError, ConfigError, DataError
from bertlab.files import markdown_table, written_whole

log = logging.getLogger(__name__)

METHODS = ("embeddings", "finetune")


def check(cfg: DictConfig) -> None:
    """The command's own keys, then train.py's checks of the data and model (no torch)."""
    from bertlab.training.checks import check_config

    if cfg.method not in METHODS:
        raise ConfigError(f"method={cfg.method} is not valid; use {' or '.join(METHODS)}")
    folds = cfg.folds
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise ConfigError(f"folds={folds!r} is not valid; use a number of folds >= 2 (e.g. folds=5)")
    if isinstance(cfg.top, bool) or not isinstance(cfg.top, int) or cfg.top < 1:
        raise ConfigError(f"top={cfg.top!r} is not valid; use a positive number of rows")
    if cfg.cv_run is not None:
        if cfg.method != "finetune":
            raise ConfigError("cv_run is read by method=finetune; add method=finetune (or drop cv_run)")
        record = Path(cfg.cv_run) / "metrics.json"
        cv = json.loads(record.read_text()).get("cv") if record.is_file() else None
        if not cv:
            raise ConfigError(f"cv_run={cfg.cv_run} is not a finished cross-validation run; give the "
                              f"folder of a `python train.py cv=K` run")
    check_config(cfg)


def all_rows(cfg: DictConfig) -> DictConfig:
    """The config whose folds cover every row of the training file: no validation or test split
    of its own (the folds hold rows out), cross-validated into cfg.folds."""
    c = copy.deepcopy(cfg)
    with open_dict(c):
        c.cv, c.cv_fold = cfg.folds, None
        c.data.validation_file = c.data.test_file = None
        c.data.test_size = 0.0
        if c.data.get("source") == "hub":
            c.data.splits = {"train": (c.data.get("splits") or {}).get("train", "train")}
    return c


def fold_data(cfg: DictConfig):
    """Fold 0's data module of `all_rows`' config: its train and validation splits hold every row
    once. A regression target is refused: it has no classes to be wrong in."""
    from bertlab.data.datamodule import from_config

    first = copy.deepcopy(cfg)
    with open_dict(first):
        first.cv_fold = 0
    dm = from_config(first)
    try:
        dm.setup("fit")
    except BertlabError as e:  # the folds are cv's: name the key the user typed
        if not str(e).startswith(f"cv={cfg.cv} "):
            raise
        raise type(e)(str(e).replace(f"cv={cfg.cv}", f"folds={cfg.cv}").replace("use cv=", "use folds=")
                      ) from None
    if not dm.task.has_classes:
        raise ConfigError(f"data.label_column={cfg.data.label_column!r} holds numbers (a regression "
                          f"target): a label issue is a row in the wrong class, and numbers have "
                          f"no classes to be wrong in; use a classification data set")
    return dm


def check_classes(table: dict, labels: list[str], folds: int, multi_hot: bool) -> None:
    """Every class has a row in each fold, and there are at least two."""
    counts = table["label"].sum(0) if multi_hot else np.bincount(table["label"], minlength=len(labels))
    present = [(name, int(n)) for name, n in zip(labels, counts) if n]
    if len(present) < 2:
        raise DataError(f"the training data holds one class ({present[0][0] if present else 'none'}); "
                        f"finding wrong labels needs two or more")
    name, n = min(present, key=lambda p: p[1])
    if n < folds:
        raise DataError(f"class {name!r} has {n} rows, fewer than folds={folds}: each fold needs "
                        f"a row of it; use folds={max(2, n)} or fewer, or add rows of {name!r}")


def flagged(table: dict, multi_hot: bool) -> tuple[np.ndarray, np.ndarray]:
    """(the rows cleanlab flags, worst first; every row's label-quality score in [0, 1])."""
    if multi_hot:
        from cleanlab.multilabel_classification.filter import find_label_issues
        from cleanlab.multilabel_classification.rank import get_label_quality_scores

        labels = [np.flatnonzero(row).tolist() for row in table["label"]]
        issues = find_label_issues(labels, table["probs"], return_indices_ranked_by="self_confidence")
        return issues, get_label_quality_scores(labels, table["probs"])
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    issues = find_label_issues(table["label"], table["probs"], return_indices_ranked_by="self_confidence")
    return issues, get_label_quality_scores(table["label"], table["probs"])


def named(value, labels: list[str], multi_hot: bool) -> str:
    """A label (an index, or a multi-hot row) by its class names ("a;b" for several)."""
    if multi_hot:
        return ";".join(labels[i] for i in np.flatnonzero(value))
    return labels[int(value)]


def issue_rows(table: dict, issues, quality, labels: list[str], multi_hot: bool) -> list[dict]:
    suggested = table["probs"] > 0.5 if multi_hot else table["probs"].argmax(1)
    out = []
    for rank, i in enumerate(issues, 1):
        row = {"rank": rank, "row": int(table["row"][i]), "quality": float(f"{quality[i]:.4g}"),
               "given": named(table["label"][i], labels, multi_hot),
               "suggested": named(suggested[i], labels, multi_hot), "text": table["text"][i]}
        if table["text_pair"] is not None:
            row["text_pair"] = table["text_pair"][i]
        out.append(row)
    return out


def write_summary(out: Path, rows: list[dict], total: int, top: int, method: str) -> None:
    pairs = Counter((r["given"], r["suggested"]) for r in rows)
    lines = [f"# Label issues ({method})", "",
             f"{len(rows)} of {total} training rows ({len(rows) / total:.1%}) look mislabelled. "
             f"Train without them: `python train.py ... data.exclude_rows={out / 'label_issues.csv'}` "
             f"(or `data.relabel_rows=`).", "", "## Given -> suggested", "",
             *markdown_table(["given", "suggested", "rows"],
                             [[g, s, n] for (g, s), n in pairs.most_common()]),
             "", f"## The {min(top, len(rows))} worst rows", "",
             *markdown_table(["rank", "row", "quality", "given", "suggested", "text"],
                             [[r["rank"], r["row"], r["quality"], r["given"], r["suggested"],
                               r["text"][:120].replace("|", "\\|")] for r in rows[:top]])]
    (out / "label_issues.md").write_text("\n".join(lines) + "\n")


def write_figure(path: Path, rows: list[dict], labels: list[str]) -> None:
    """Given (rows) against suggested (columns) labels of the flagged rows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = sorted({r["given"] for r in rows} | {r["suggested"] for r in rows}, key=str) or labels
    index = {n: i for i, n in enumerate(names)}
    grid = np.zeros((len(names), len(names)), dtype=int)
    for r in rows:
        grid[index[r["given"]], index[r["suggested"]]] += 1
    size = min(3 + 0.5 * len(names), 14)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(grid, cmap="Reds")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("suggested label")
    ax.set_ylabel("given label")
    ax.set_title(f"{len(rows)} label issues: given vs suggested")
    if len(names) <= 20:
        for (i, j), n in np.ndenumerate(grid):
            ax.text(j, i, n, ha="center", va="center", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


COLUMNS = ("rank", "row", "quality", "given", "suggested", "text", "text_pair")


def write_issues(path: Path, rows: list[dict], pairs: bool) -> None:
    """label_issues.csv: a header even when nothing was flagged."""
    import csv

    columns = COLUMNS if pairs else COLUMNS[:-1]
    with written_whole(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def find_label_issues(cfg: DictConfig) -> None:
    from bertlab.label_issues.scores import embedding_probs, finetune_probs
    from bertlab.training.train import set_up_process

    started, out = time.time(), Path(cfg.output_dir)
    runs.claim_run_dir(out)
    set_up_process(cfg)  # seeds, threads, quiet libraries
    wide = all_rows(cfg)
    if cfg.method == "embeddings":
        dm = fold_data(wide)
        check_rows(dm, cfg.folds)
        table = embedding_probs(wide, dm, cfg.folds)
    else:
        cv_run = Path(cfg.cv_run) if cfg.cv_run else None
        if cv_run is None:
            check_rows(fold_data(wide), cfg.folds)
            cv_run = train_folds(wide, out / "cv")
            if not runs.continue_alone():
                return  # DDP: this process helped train the folds; the first one finds the issues
        table, dm = finetune_probs(cv_run)
        if not dm.task.has_classes:
            raise ConfigError(f"cv_run={cv_run} is a regression run; label issues need classes")
    issues, quality = flagged(table, dm.task.multi_hot)
    rows = issue_rows(table, issues, quality, dm.labels, dm.task.multi_hot)
    write_issues(out / "label_issues.csv", rows, table["text_pair"] is not None)
    write_summary(out, rows, len(table["row"]), cfg.top, cfg.method)
    write_figure(out / "label_issues.png", rows, dm.labels)
    record = {"status": "finished", "method": cfg.method, "folds": cfg.folds, "rows": len(table["row"]),
              "issues": len(rows), "share": round(len(rows) / len(table["row"]), 4),
              "by_given_suggested": {f"{g} -> {s}": n for (g, s), n in
                                     Counter((r["given"], r["suggested"]) for r in rows).most_common()},
              "wall_seconds": round(time.time() - started, 1)}
    runs.write_metrics(out, record)
    log.info("label issues: %d of %d rows (%.1f%%) -> %s", len(rows), len(table["row"]),
             100 * record["share"], out / "label_issues.csv")


def check_rows(dm, folds: int) -> None:
    from bertlab.label_issues.scores import held_out, rows_of

    table = {"label": np.concatenate([rows_of(dm, s)["label"] for s in ("train", held_out(dm))])}
    check_classes(table, dm.labels, folds, dm.task.multi_hot)


def train_folds(wide: DictConfig, cv_dir: Path) -> Path:
    """method=finetune: train.py cv=K into <output_dir>/cv (a normal cv run folder)."""
    from bertlab.training.train import train

    with open_dict(wide):
        wide.output_dir = str(cv_dir)
    log.info("finetune: %d folds -> %s", wide.cv, cv_dir)
    train(wide)
    return cv_dir
