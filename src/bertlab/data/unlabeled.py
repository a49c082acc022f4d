"""data.unlabeled_file: texts without labels for the distillation teacher to label, read as the
labelled files are, and joined to the training rows."""
from __future__ import annotations

import logging
from pathlib import Path

import datasets

from bertlab.errors import ConfigError, DataError

log = logging.getLogger(__name__)


def read_unlabeled(c: dict) -> datasets.Dataset:
    """data.unlabeled_file: a .txt file (one text per line) or a table with the text column (and
    the pair column of a pair task), cleaned like the rest; blank texts dropped."""
    from bertlab.data.clean import cleaner
    from bertlab.data.sources import read_files

    path = c["files"]["unlabeled"]
    if not Path(path).is_file():
        raise ConfigError(f"data.unlabeled_file={path} does not exist")
    if Path(path).suffix.lower() == ".txt":
        from bertlab.files import lines_of

        encoding = (c["read_kwargs"] or {}).get("encoding", "utf-8")
        with open(path, "rb") as f:
            texts = list(lines_of(f, encoding, f"data.unlabeled_file={path}", "data.read_kwargs"))
        ds = datasets.Dataset.from_dict({c["text_column"]: texts})
    else:
        ds = read_files({"unlabeled": path}, None, c["read_kwargs"])["unlabeled"]
    columns = [c["text_column"]] + ([c["text_pair_column"]] if c["text_pair_column"] else [])
    missing = [col for col in columns if col not in ds.column_names]
    if missing:
        raise DataError(f"data.unlabeled_file={path} has no column {missing[0]!r} (data.text_column"
                        f"{'/text_pair_column' if len(columns) > 1 else ''}); its columns are: "
                        f"{', '.join(ds.column_names)}")
    clean = cleaner(c["clean"])
    out = {"text": [clean(t) for t in ds[c["text_column"]][:]]}
    if c["text_pair_column"]:
        out["text_pair"] = [clean(t) for t in ds[c["text_pair_column"]][:]]
    ds = datasets.Dataset.from_dict(out).filter(lambda row: bool(row["text"].strip()))
    if not len(ds):
        raise DataError(f"data.unlabeled_file={path} holds no texts (every one is blank); give "
                        f"texts for the teacher to label, or leave data.unlabeled_file out")
    return ds


def with_unlabeled(train: datasets.Dataset, unlabeled: datasets.Dataset, report: dict
                   ) -> datasets.Dataset:
    """The training rows (labeled=True) followed by the unlabelled ones (labeled=False, a
    placeholder label that no loss reads)."""
    from bertlab.data.hygiene import count

    example = train[0]["labels"]
    placeholder = [0] * len(example) if isinstance(example, list) else type(example)(0)
    extra = unlabeled.add_column("labels", [placeholder] * len(unlabeled))
    extra = extra.add_column("labeled", [False] * len(extra))
    if "row" in train.column_names:  # (not rows of the training file)
        extra = extra.add_column("row", [-1] * len(extra))
    train = train.add_column("labeled", [True] * len(train))
    extra = extra.select_columns(train.column_names).cast(train.features)
    count(report, "unlabeled", "train", len(extra))
    log.info("train: %d labelled rows and %d unlabelled rows (the teacher's alone)", len(train), len(extra))
    return datasets.concatenate_datasets([train, extra])
