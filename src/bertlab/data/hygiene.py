"""Clean and count: standard columns, cleaned text, unusable rows dropped (or refused under
data.strict), duplicates and train/eval leakage counted. Plain functions on `datasets` objects;
what happened to how many rows goes into `report` (metrics.json "data")."""
from __future__ import annotations

import logging
import math
import os

import datasets

from bertlab.data.clean import cleaner
from bertlab.errors import DataError
from bertlab.files import other_separator

ROW = "__bertlab_row__"  # a row's position in its split as read (0: the first); `row` once standardized

log = logging.getLogger(__name__)


def count(report: dict, what: str, split: str, n: int) -> None:
    """Record that `n` rows of `split` had `what` happen to them (nothing when n is 0)."""
    if n:
        report.setdefault(what, {})[split] = int(n)


def stripped(label):
    """A label without spaces around it (each of a list's)."""
    if isinstance(label, str):
        return label.strip()
    if isinstance(label, list):
        return [x.strip() if isinstance(x, str) else x for x in label]
    return label


def is_missing(v) -> bool:
    return v is None or (isinstance(v, float) and not math.isfinite(v)) or v == ""


def check_columns(dd: datasets.DatasetDict, c: dict) -> None:
    wanted = [c["text_column"], c["label_column"]] + (
        [c["text_pair_column"]] if c["text_pair_column"] else [])
    for split, ds in dd.items():
        columns = [col for col in ds.column_names if col != ROW]  # (the file's own)
        missing = [col for col in wanted if col not in columns]
        if missing:
            key = {c["text_column"]: "text_column", c["label_column"]: "label_column"}.get(
                missing[0], "text_pair_column")
            sep = other_separator(columns)
            hint = f"; separated by {sep!r}? set data.read_kwargs={{sep: {sep!r}}}" if sep else ""
            raise DataError(f"data.{key}={missing[0]!r} is not a column of the {split} data; "
                            f"its columns are: {', '.join(columns)}{hint}")


PARALLEL_FROM = 20_000  # rows: below this, cleaning and tokenizing in one process is quicker


def processes(num_proc: int | None, rows: int) -> int | None:
    """Worker processes for a `datasets.map` over `rows` rows: data.num_proc, or (null) one per
    core for big data; small data in this process, where forking would cost more than it saves."""
    if num_proc is None:
        num_proc = min(os.cpu_count() or 1, 8) if rows >= PARALLEL_FROM else 1
    return num_proc if num_proc > 1 and rows >= 2 * num_proc else None


def standardize(dd: datasets.DatasetDict, c: dict, report: dict, num_proc: int | None = 1
                ) -> datasets.DatasetDict:
    """Keep text, text_pair and labels (renamed), cleaned (in `num_proc` processes); drop
    unusable rows with a count (or refuse them under data.strict); count, and optionally drop,
    duplicates."""
    check_columns(dd, c)
    clean = cleaner(c["clean"])
    pair = c["text_pair_column"]

    def standard(batch):
        raw, labels = batch[c["text_column"]], batch[c["label_column"]]
        out = {"text": [clean(t) for t in raw], "labels": [stripped(y) for y in labels]}
        out["label_changed"] = [isinstance(y, (str, list)) and y != s
                                for y, s in zip(labels, out["labels"])]  # (nan != nan)
        changed = [str(r) != t for r, t in zip(raw, out["text"])]
        if pair:
            out["text_pair"] = [clean(t) for t in batch[pair]]
            changed = [ch or str(r) != t for ch, r, t in zip(changed, batch[pair], out["text_pair"])]
        out["changed"] = changed
        if ROW in batch:  # (the position in the file: label_issues.csv names rows by it)
            out["row"] = batch[ROW]
        return out

    out = {}
    for split, ds in dd.items():
        for key in filter(lambda k: c[k], ("text_column", "text_pair_column")):
            col = c[key]
            if not isinstance(ds.features[col], datasets.Value):  # lists, dicts: their repr
                first = next((v for v in ds[col] if v is not None), None)
                raise DataError(f"data.{key}={col!r} holds {type(first).__name__}s (e.g. "
                                f"{str(first)[:60]}), not text; give a column of strings")
            if ds.features[col].dtype not in ("string", "large_string"):  # numbers (codes, ids): text
                ds = ds.cast_column(col, datasets.Value("string"))  # (map would cast them back)
        ds = ds.map(standard, batched=True, remove_columns=ds.column_names, desc=f"clean {split}",
                    num_proc=processes(num_proc, len(ds)))
        count(report, "cleaned", split, sum(ds["changed"][:]))
        spaced = sum(ds["label_changed"][:])
        if spaced:  # "pos " beside "pos" would be a class of its own
            log.warning("%s: %d labels had spaces around them, removed", split, spaced)
            count(report, "labels_stripped", split, spaced)
        ds = drop_unusable(split, ds.remove_columns(["changed", "label_changed"]), c["strict"], report,
                           c["label_column"])
        if len(ds) == 0:
            raise DataError(f"the {split} data is empty after dropping blank rows and missing "
                            f"labels (columns {c['text_column']!r}, {c['label_column']!r})")
        out[split] = duplicates(split, ds, c["drop_duplicates"], report)
    return datasets.DatasetDict(out)


def drop_unusable(split: str, ds: datasets.Dataset, strict: bool, report: dict,
                  label_column: str) -> datasets.Dataset:
    """Rows with a blank text (or text pair) or a missing/NaN label: dropped and counted, or
    refused (strict)."""
    n = len(ds)
    pairs = ds["text_pair"][:] if "text_pair" in ds.column_names else [True] * n  # (NLI's hypothesis)
    usable = [bool(t) and bool(p) and not is_missing(y)
              for t, p, y in zip(ds["text"][:], pairs, ds["labels"][:])]
    if all(usable):
        return ds
    if all(is_missing(y) for y in ds["labels"][:]):  # a column of blanks, or one the file lacks
        raise DataError(f"the {split} data has no labels: data.label_column={label_column!r} is "
                        f"empty in every row, or not in its file; {split} rows need labels to "
                        f"train or score (predict.py labels new text)")
    first = usable.index(False)
    if strict:
        raise DataError(f"{split} data: {n - sum(usable)} of {n} rows have blank text or a "
                        f"missing/NaN label (the first is data row {first + 1}); data.strict=true "
                        f"refuses them (false: drop and count them)")
    ds = ds.select([i for i, ok in enumerate(usable) if ok])
    log.warning("%s: dropped %d of %d rows with blank text or a missing label (the first is data "
                "row %d)", split, n - len(ds), n, first + 1)
    count(report, "dropped", split, n - len(ds))
    return ds


def text_keys(ds: datasets.Dataset) -> list:
    """What makes two rows the same input: the text, or the (text, text_pair) pair."""
    if "text_pair" in ds.column_names:
        return list(zip(ds["text"][:], ds["text_pair"][:]))
    return ds["text"][:]


def leakage(dd: datasets.DatasetDict, report: dict) -> None:
    """Count evaluation rows whose text (and pair) also occurs in train: they overstate the
    scores. Done after the split, so carved validation/test splits are checked too."""
    seen = set(text_keys(dd["train"]))
    for split, ds in dd.items():
        n = sum(k in seen for k in text_keys(ds)) if split != "train" else 0
        if n:
            log.warning("%s: %d of %d rows also occur in train", split, n, len(ds))
            count(report, "also_in_train", split, n)


def duplicates(split: str, ds: datasets.Dataset, drop: bool, report: dict) -> datasets.Dataset:
    """Count rows whose text (and pair) occurred earlier in the split, and those among them
    with another label; drop them (keeping the first) when `drop` (data.drop_duplicates)."""
    first: dict = {}
    repeats, conflicts = [], 0
    labels = ds["labels"][:]
    for i, key in enumerate(text_keys(ds)):
        if key in first:
            repeats.append(i)
            conflicts += str(labels[first[key]]) != str(labels[i])
        else:
            first[key] = i
    if not repeats:
        return ds
    count(report, "duplicates", split, len(repeats))
    count(report, "duplicates_with_another_label", split, conflicts)
    action = "dropped" if drop else "kept (data.drop_duplicates=true drops them)"
    log.warning("%s: %d rows repeat an earlier text (%d of them with another label); %s",
                split, len(repeats), conflicts, action)
    if drop:
        gone = set(repeats)
        ds = ds.select([i for i in range(len(ds)) if i not in gone])
    return ds
