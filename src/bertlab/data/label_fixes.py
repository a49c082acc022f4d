"""Training without the rows whose label looks wrong, or with the labels suggested for them: the
rows find_label_issues.py listed in its label_issues.csv (`row`: the position in the training file,
worst first), each checked against the file before anything changes. The file itself is never
written; what was excluded or relabelled is counted in the data report (the log, metrics.json)."""
from __future__ import annotations

import csv
import logging
from pathlib import Path

import datasets

from bertlab.errors import ConfigError, DataError

log = logging.getLogger(__name__)

NEEDED = ("row", "text", "suggested")  # label_issues.csv columns these keys read


def read_listed(path: str, key: str) -> list[dict]:
    """The rows a label_issues.csv lists, in its order (worst first)."""
    if not Path(path).is_file():
        raise ConfigError(f"data.{key}={path} does not exist; give the label_issues.csv that "
                          f"find_label_issues.py wrote")
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in NEEDED if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(f"data.{key}={path} has no {', '.join(missing)} column; give the "
                            f"label_issues.csv that find_label_issues.py wrote")
        rows = list(reader)
    for r in rows:
        if not r["row"].isdigit():
            raise DataError(f"data.{key}={path}: row={r['row']!r} is not a row position (0, 1, ...)")
    return rows


def check_listed(train: datasets.Dataset, listed: list[dict], c: dict, key: str) -> None:
    """Each listed row is the same row of the training file: its position exists and holds the
    same text (and pair); else the list was made from another file, or the file changed since."""
    from bertlab.data.clean import cleaner

    n, clean = len(train), cleaner(c["clean"])  # (the list holds the texts as training read them)
    for r in listed:
        i = int(r["row"])
        if i >= n:
            raise DataError(f"data.{key}: row {i} is past the end of the training data ({n} rows); "
                            f"the list was made from another file (run find_label_issues.py on this one)")
        for col, listed_col in ((c["text_column"], "text"), (c["text_pair_column"], "text_pair")):
            if not col or listed_col not in r:
                continue
            here = clean(train[i][col])
            if here != r[listed_col]:
                raise DataError(f"data.{key}: row {i} holds {str(here)[:50]!r} in the training data but "
                                f"{r[listed_col][:50]!r} in the list; it was made from another file, or "
                                f"the file changed since (run find_label_issues.py again)")


def relabelled(value, suggested: str, key: str):
    """`suggested` (a class name) in the label column's own type."""
    if isinstance(value, list):
        raise ConfigError(f"data.{key} is for single-label data; for multi-label rows use "
                          f"data.exclude_rows")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return suggested
    try:
        number = float(suggested)
    except ValueError:
        raise DataError(f"data.{key}: the suggested label {suggested!r} is not a number, as the "
                        f"label column's are; the list was made from other data") from None
    return int(number) if isinstance(value, int) else number


def apply_label_fixes(train: datasets.Dataset, whole: datasets.Dataset, c: dict, report: dict
                      ) -> datasets.Dataset:
    """The raw training rows `train` (all of `whole`, the file as read, or data.max_samples' sample
    of it) with data.relabel_rows' labels and without data.exclude_rows' rows (its first
    data.exclude_top only, if set), each listed row checked against `whole`."""
    from bertlab.data.hygiene import ROW, count

    exclude, top, relabel = c.get("exclude_rows"), c.get("exclude_top"), c.get("relabel_rows")
    if top is not None and not exclude:
        raise ConfigError(f"data.exclude_top={top} counts rows of data.exclude_rows, which is not "
                          f"set; give data.exclude_rows=<label_issues.csv> too")
    if relabel:
        listed = read_listed(relabel, "relabel_rows")
        check_listed(whole, listed, c, "relabel_rows")
        column = c["label_column"]
        new = {int(r["row"]): r["suggested"] for r in listed}
        labels = train[column]
        fixed = [relabelled(y, new[i], "relabel_rows") if i in new else y
                 for i, y in zip(train[ROW], labels)]
        changed = sum(a != b for a, b in zip(labels, fixed))
        train = train.remove_columns(column).add_column(column, fixed)
        count(report, "relabeled_rows", "train", changed)
        log.info("train: %d rows relabelled as data.relabel_rows=%s suggests", changed, relabel)
    if exclude:
        listed = read_listed(exclude, "exclude_rows")[:top]
        check_listed(whole, listed, c, "exclude_rows")
        drop = {int(r["row"]) for r in listed}
        before = len(train)
        train = train.filter(lambda i: i not in drop, input_columns=ROW)
        count(report, "excluded_rows", "train", before - len(train))
        log.info("train: %d rows excluded, as data.exclude_rows=%s lists%s", before - len(train),
                 exclude, f" (its first {top})" if top is not None else "")
    return train
