"""Labels and splits: the task a label column means, class names <-> ids, carved validation and
test splits, and cross-validation folds. Plain functions on `datasets` objects."""
from __future__ import annotations

import collections
import logging
import math

import datasets
import numpy as np

from bertlab.data.hygiene import count
from bertlab.errors import ConfigError, DataError
from bertlab.task import CLASSIFICATION, MULTILABEL, REGRESSION, TASKS, Task, task_of

log = logging.getLogger(__name__)

HELD_OUT = "heldout"  # under cv, a fold's held-out rows when only part of them validates


def task_named(name: str | None, feature) -> Task:
    """data.task if given (checked), else what the label column holds: floats mean regression,
    lists multi-label, anything else classes."""
    if name is not None:
        if name not in TASKS:
            raise ConfigError(f"data.task={name!r} is not valid; use one of {', '.join(TASKS)}")
        return TASKS[name]
    if isinstance(feature, (datasets.Sequence, datasets.List, list)):
        return MULTILABEL
    if isinstance(feature, datasets.Value) and feature.dtype.startswith("float"):
        return REGRESSION
    return CLASSIFICATION


def integers_with_gaps(ds: datasets.Dataset, column: str) -> bool:
    """A float label column that holds whole numbers and missing cells: a csv's integer column
    (0/1, stars) that pandas stores as floats only because a cell is empty. Without the gaps it
    would read as integers, that is classes; with them it must read the same."""
    feature = ds.features.get(column)
    if not (isinstance(feature, datasets.Value) and feature.dtype.startswith("float")):
        return False
    values = ds[column][:]
    present = [v for v in values if v is not None]  # (an explicit NaN is a float's, not a gap)
    return len(present) < len(values) and all(math.isfinite(v) and v == int(v) for v in present)


def as_integers(dd: datasets.DatasetDict, splits: list[str]) -> datasets.DatasetDict:
    """The labels of `splits` (integers_with_gaps, their gaps dropped since) as integers."""
    if splits:
        log.info("the %s labels are whole numbers with empty cells (a csv stores them as floats): "
                 "read as integers, as without the gaps (data.task=regression: numbers to "
                 "predict)", "/".join(splits))
    return datasets.DatasetDict({split: ds.cast_column("labels", datasets.Value("int64"))
                                 if split in splits else ds for split, ds in dd.items()})


def label_names(values: list, task: Task) -> list[str]:
    """Sorted class names; integer labels sort as numbers ("2" before "10")."""
    flat = {v for row in values for v in row} if task.multi_hot else set(values)
    if all(isinstance(v, (int, bool)) for v in flat):
        return [str(v) for v in sorted(flat)]
    return sorted(str(v) for v in flat)


def mixed_labels(split: str, values: list, strict: bool, report: dict) -> None:
    """Count the labels of the rarer kind when a column mixes numbers and words ("1", "2",
    "pos"; in a csv every value is a string): those rows are probably mistakes, and each
    distinct value becomes a class of its own."""
    kinds: dict[str, list] = {"numbers": [], "words": []}
    for v in values:
        if v is None:
            continue
        try:
            float(v)
            kinds["numbers"].append(v)
        except (TypeError, ValueError):
            kinds["words"].append(v)
    if not kinds["numbers"] or not kinds["words"]:
        return
    rare = min(kinds, key=lambda k: len(kinds[k]))
    message = (f"{split}: the label column mixes numbers and words; {len(kinds[rare])} rows "
               f"hold {rare} (e.g. {kinds[rare][0]!r}), all read as class names")
    if strict:
        raise DataError(f"{message}; data.strict=true refuses them")
    log.warning("%s", message)
    count(report, "mixed_label_types", split, len(kinds[rare]))


def case_twins(names: list[str], strict: bool, report: dict) -> None:
    """Warn of class names that differ only in case ("pos" and "POS"): each is a class of its
    own, which is rarely what a file's author meant; not merged, since only the author knows."""
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(name.casefold(), []).append(name)
    twins = [group for group in groups.values() if len(group) > 1]
    if not twins:
        return
    message = (f"train: label names that differ only in case ("
               f"{'; '.join(' and '.join(repr(n) for n in g) for g in twins[:3])}) are read as "
               f"separate classes; write each one way in the file if it is one class")
    if strict:
        raise DataError(f"{message}; data.strict=true refuses them")
    log.warning("%s", message)
    count(report, "case_twin_labels", "train", sum(len(g) for g in twins))


def encode_labels(dd: datasets.DatasetDict, task: Task, c: dict,
                  report: dict) -> tuple[datasets.DatasetDict, list[str]]:
    """(splits with label ids, class names): names from the training labels (or the trained
    model's, c["labels"]); other splits may only use those names. Regression: floats, no names."""
    if not task.has_classes:
        return float_targets(dd, c), []
    names = class_names(dd, task, c, report)
    ids = {name: i for i, name in enumerate(names)}

    def to_ids(batch):
        if task.multi_hot:
            hot = [[0.0] * len(ids) for _ in batch["labels"]]
            for row, row_names in zip(hot, batch["labels"]):
                for n in row_names:
                    row[ids[str(n)]] = 1.0
            return {"labels": hot}
        return {"labels": [ids[str(v)] for v in batch["labels"]]}

    feature = (datasets.Sequence(datasets.Value("float32")) if task.multi_hot
               else datasets.ClassLabel(names=names))
    return datasets.DatasetDict({
        split: ds.map(to_ids, batched=True,
                      features=datasets.Features({**ds.features, "labels": feature}))
        for split, ds in dd.items()}), names


def float_targets(dd: datasets.DatasetDict, c: dict) -> datasets.DatasetDict:
    """Regression: the labels as floats, refused when they are not numbers or do not vary."""
    try:
        dd = dd.cast_column("labels", datasets.Value("float32"))
    except (ValueError, TypeError) as e:
        raise DataError(f"data.label_column={c['label_column']!r} has values that are not "
                        f"numbers, so it cannot be a regression target") from e
    values = set(dd["train"]["labels"][:]) if c["labels"] is None else None  # (training)
    if values is not None and len(values) < 2:  # nothing to learn, no correlation to score
        raise DataError(f"data.label_column={c['label_column']!r} holds one value in the "
                        f"training data ({values.pop()!r}); regression needs targets that vary")
    if values is not None and c["task"] is None and len(values) <= 10 and all(
            math.isfinite(v) and v == int(v) for v in values):  # "0.0"/"1.0": classes as floats?
        log.warning("the labels are floats holding %d whole values (%s): read as a regression, "
                    "as floats are; data.task=classification to predict them as classes",
                    len(values), ", ".join(f"{v:g}" for v in sorted(values)))
    return dd


def class_names(dd: datasets.DatasetDict, task: Task, c: dict, report: dict) -> list[str]:
    """The class names (the training labels', or c["labels"]), every split's labels checked
    against them."""
    for split in dd:
        if not task.multi_hot:
            mixed_labels(split, dd[split]["labels"][:], c["strict"], report)
            continue
        single = next((v for v in dd[split]["labels"][:] if not isinstance(v, (list, tuple))), None)
        if single is not None:  # a string would be read as a list of its characters
            raise DataError(f"data.task=multilabel needs a list in each row of data.label_column="
                            f"{c['label_column']!r} (e.g. [\"sports\", \"politics\"] in a json, "
                            f"jsonl or parquet file); the {split} data holds {single!r}")
    given = c["labels"]  # a trained model's label names (eval on a new file)
    names = list(given) if given is not None else label_names(dd["train"]["labels"][:], task)
    if given is None:
        case_twins(names, c["strict"], report)
    if given is None and len(names) < 2:
        raise DataError(f"data.label_column={c['label_column']!r} holds one label in the training "
                        f"data ({names[0]!r}); {task} needs at least two (numbers to predict: "
                        f"data.task=regression)")
    known = set(names)
    for split in dd:
        values = dd[split]["labels"][:]
        seen = {str(v) for row in values for v in row} if task.multi_hot else {str(v) for v in values}
        unknown = sorted(seen - known)
        if unknown:
            near = [n for n in names if n.casefold() == unknown[0].casefold()]
            raise DataError(f"label {unknown[0]!r} in the {split} data never occurs in training"
                            f"{f' ({near[0]!r} differs only in case)' if near else ''};"
                            f" training labels: {', '.join(names)}")
    return names


def carve(dd: datasets.DatasetDict, task: Task, c: dict, report: dict | None = None
          ) -> datasets.DatasetDict:
    """Carve missing validation/test splits out of train: seeded, stratified for classes, the
    validation split at most c["max_val_rows"] rows, and none at all under c["trust_val_rows"]
    rows (too few to choose by: they train, and `report` says how many; not for multi-label
    data, whose thresholds are tuned on it); under cv (c["cv"] = (folds, index)) the
    validation split is fold `index`, and a fold over c["max_val_rows"] rows is kept whole as
    the `heldout` split (what label_issues scores) while a seeded `max_val_rows` of it validates
    (a fold of 34k tweets validated all 6,869 of its rows at every check)."""
    n = len(dd["train"])
    stratify = "labels" if task.stratified else None
    trained = 0
    for split, frac in (("test", c["test_size"]), ("validation", c["val_size"])):
        if split in dd or not frac or (split == "validation" and c["cv"]):
            continue
        k = max(1, round(frac * n))
        if split == "validation" and c.get("max_val_rows"):
            k = min(k, c["max_val_rows"])  # a large set: the rows past the cap train instead
        k = with_each_class(k, dd["train"], stratify)
        if split == "validation" and k < (c.get("trust_val_rows") or 0) and not task.multi_hot:
            trained = k
            log.info("validation: a %d-row split is too few to choose by (under budget.trust_val_rows="
                     "%d): not carved, every training row trains and the last weights are kept",
                     k, c["trust_val_rows"])
            continue
        try:
            seed = c["seed"] if split == "test" or c.get("run_seed") is None else c["run_seed"]
            dd["train"], dd[split] = split_off(dd["train"], k, seed, stratify)
        except ValueError as e:
            raise DataError(f"cannot carve a {k}-row {split} split out of {len(dd['train'])} "
                            f"training rows ({e}); give data.{split}_file or more data") from e
    if c["cv"]:
        if "validation" in dd:
            raise ConfigError("cv makes its validation folds out of data.train_file; drop "
                              "data.validation_file (or train without cv)")
        dd["train"], dd["validation"] = fold(dd["train"], *c["cv"], task, c["seed"])
        held, cap = dd["validation"], c.get("max_val_rows")
        k = cap and with_each_class(cap, held, stratify)
        if k and len(held) > k:  # the fold is scored whole (heldout), monitored on k rows
            dd[HELD_OUT], dd["validation"] = held, split_off(held, k, c["seed"], stratify)[1]
            log.info("cv: fold %d validates %d of its %d held-out rows (data.max_val_rows=%d)",
                     c["cv"][1], k, len(held), cap)
    if trained and report is not None:
        report["validation"] = {"not_carved_rows": trained}
    if "validation" not in dd and not trained:
        raise ConfigError("there is no validation split: give data.validation_file or set "
                          "data.val_size to a fraction in (0, 1)")
    return dd


def with_each_class(k: int, ds: datasets.Dataset, stratify: str | None) -> int:
    """Rows a split of `ds` takes: k, or a stratified split's one row of each class if that is
    more (8 rows of 3 classes at 10%: 3, not 2)."""
    return max(k, len(set(ds[stratify][:]))) if stratify else k


def split_off(ds: datasets.Dataset, k: int, seed: int, stratify: str | None
              ) -> tuple[datasets.Dataset, datasets.Dataset]:
    """(rest, k rows): the rows datasets' `train_test_split(test_size=k, seed=seed,
    stratify_by_column=stratify)` gives, with the labels read as one column: datasets 5 reads
    them row by row there (13 s of 20 for 100k rows). Stratified with datasets' own function."""
    if stratify is None or len(ds) - k < 1:
        parts = ds.train_test_split(test_size=k, seed=seed, stratify_by_column=stratify)
        return parts["train"], parts["test"]
    from datasets.utils.stratify import stratified_shuffle_split_generate_indices

    labels = np.asarray(ds[stratify][:])
    try:
        train, test = next(stratified_shuffle_split_generate_indices(
            labels, len(ds) - k, k, rng=np.random.default_rng(seed)))
    except ValueError as e:
        if str(e) != "Minimum class count error":
            raise
        names, counts = np.unique(labels, return_counts=True)
        rare = ds.features[stratify].int2str(int(names[counts.argmin()]))
        raise ValueError(f"class {rare!r} has 1 row; a stratified split needs 2 or more "
                         f"of each") from None
    return ds.select(train), ds.select(test)


def fold(ds: datasets.Dataset, folds: int, index: int, task: Task | str, seed: int):
    """(train, validation) of fold `index` of `folds`: seeded, stratified by class for
    single-label classification; a regression or multi-label target has no classes to
    stratify by, so its folds are a seeded random partition."""
    from sklearn.model_selection import KFold, StratifiedKFold

    task = task_of(task)
    labels = ds["labels"][:]
    if task.stratified:
        counts = collections.Counter(labels)
        smallest, n = min(counts.items(), key=lambda kv: kv[1])
        if folds > n:
            names = ds.features["labels"].names
            raise ConfigError(f"cv={folds} is more than the {n} training rows of the smallest "
                              f"class ({names[smallest]!r}); use cv={max(2, n)} or fewer")
        splitter = StratifiedKFold(folds, shuffle=True, random_state=seed)
    else:
        if folds > len(ds):
            raise ConfigError(f"cv={folds} is more than the {len(ds)} training rows")
        log.info("cv: a %s target has no classes to stratify by; the folds are a seeded random "
                 "partition", task)
        splitter = KFold(folds, shuffle=True, random_state=seed)
    train_idx, val_idx = list(splitter.split(range(len(ds)), labels))[index]
    return ds.select(train_idx), ds.select(val_idx)
