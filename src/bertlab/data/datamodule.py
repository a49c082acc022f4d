"""TextDataModule: source -> clean -> split -> encode labels -> tokenize (cached) -> batches."""
from __future__ import annotations

import collections
import hashlib
import json
import logging
import math
import os
import shutil
from pathlib import Path

import datasets
import lightning as L
import torch
from torch.utils.data import DataLoader
from transformers import AutoTokenizer, DataCollatorWithPadding

from bertlab.data.clean import cleaner
from bertlab.data.sampler import EpochSampler
from bertlab.data.sources import SOURCES, multiline_rows, read_files, read_hub
from bertlab.errors import ConfigError, DataError
from bertlab.hub import from_pretrained

log = logging.getLogger(__name__)

TASKS = ("classification", "multilabel", "regression")
SPLITS = ("train", "validation", "test")
MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids", "labels")
CACHE_VERSION = 3  # bump when the cached layout changes


def infer_task(feature) -> str:
    """A float column means regression, a list column multi-label, anything else classes."""
    if isinstance(feature, (datasets.Sequence, datasets.List, list)):
        return "multilabel"
    if isinstance(feature, datasets.Value) and feature.dtype.startswith("float"):
        return "regression"
    return "classification"


def label_names(values: list, task: str) -> list[str]:
    """Sorted class names; integer labels sort as numbers ("2" before "10")."""
    flat = {v for row in values for v in row} if task == "multilabel" else set(values)
    if all(isinstance(v, (int, bool)) for v in flat):
        return [str(v) for v in sorted(flat)]
    return sorted(str(v) for v in flat)


def is_missing(v) -> bool:
    return v is None or (isinstance(v, float) and not math.isfinite(v)) or v == ""


class TextDataModule(L.LightningDataModule):
    """Loads, cleans, splits and tokenizes text once (cached on disk) and serves padded batches."""

    def __init__(
        self,
        source: str = "files",
        train_file: str | None = None,
        validation_file: str | None = None,
        test_file: str | None = None,
        path: str | None = None,
        name: str | None = None,
        splits: dict | None = None,
        format: str | None = None,
        read_kwargs: dict | None = None,
        text_column: str = "text",
        text_pair_column: str | None = None,
        label_column: str = "label",
        task: str | None = None,
        clean: list[str] = ("normalize_whitespace",),
        val_size: float = 0.1,
        test_size: float = 0.1,
        max_samples: int | None = None,
        tokenizer: str | None = None,
        max_length: int = 128,
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        group_by_length: bool = True,
        num_workers: int = 0,
        seed: int = 0,
        cache_dir: str | None = None,
        labels: list[str] | None = None,
        strict: bool = False,
        drop_duplicates: bool = False,
        pad_to_multiple_of: int | None = None,
        cv: tuple[int, int] | None = None,
        tokenizer_key: str = "model.tokenizer",
    ) -> None:
        super().__init__()
        if source not in SOURCES:
            raise ConfigError(f"data.source={source!r} is not valid; use one of {', '.join(SOURCES)}")
        if task is not None and task not in TASKS:
            raise ConfigError(f"data.task={task!r} is not valid; use one of {', '.join(TASKS)}")
        if source == "files" and not train_file and not (labels is not None and test_file):
            raise ConfigError("data.train_file is not set; give the path of a csv, tsv, json, jsonl "
                              "or parquet file (data=files data.train_file=my.csv)")
        for key, value in (("batch_size", batch_size), ("max_length", max_length)):
            if not isinstance(value, int) or value <= 0:
                raise ConfigError(f"{key}={value!r} is not valid; use a positive integer")
        for key, value in (("val_size", val_size), ("test_size", test_size)):
            if not 0 <= value < 1:
                raise ConfigError(f"data.{key}={value!r} is not valid; use a fraction in [0, 1)")
        self.cfg = dict(
            source=source, files={"train": train_file, "validation": validation_file,
                                  "test": test_file},
            path=path, name=name, splits=dict(splits or {}), format=format,
            read_kwargs=dict(read_kwargs or {}), text_column=text_column,
            text_pair_column=text_pair_column, label_column=label_column, task=task,
            clean=list(clean), val_size=val_size, test_size=test_size, max_samples=max_samples,
            max_length=max_length, seed=seed, labels=labels, strict=strict,
            drop_duplicates=drop_duplicates, cv=list(cv) if cv else None)
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or 2 * batch_size
        self.group_by_length = group_by_length
        self.num_workers = num_workers
        self.seed = seed
        self.cache_root = Path(os.path.expanduser(cache_dir or "~/.cache/bertlab"))
        self.tokenizer = from_pretrained(AutoTokenizer, tokenizer, what=tokenizer_key)
        limit = self.tokenizer.model_max_length
        if limit < 1_000_000 and max_length > limit:  # (no limit known: a huge placeholder)
            raise ConfigError(f"max_length={max_length} is more than this model's limit of {limit} "
                              f"tokens; use max_length={limit} or less")
        self.collator = DataCollatorWithPadding(self.tokenizer)  # pads each batch to its longest
        self.pad_to_multiple_of = pad_to_multiple_of  # None: 8 on a GPU, nothing on a CPU
        # Keyed before the first call: tokenizing with truncation changes the tokenizer's state.
        self.cache_folder = self.cache_root / self.cache_key()
        self.dataset: datasets.DatasetDict | None = None
        self.labels: list[str] = []
        self.task: str | None = None
        self.resume_at: tuple[int, int] | None = None  # (epoch, batches done) from a checkpoint
        self.report: dict[str, dict[str, int]] = {}  # rows dropped, duplicated, truncated, ...

    # ---- the one-way pipeline -------------------------------------------------------------
    def read(self) -> datasets.DatasetDict:
        c = self.cfg
        if c["source"] == "hub":
            dd = read_hub(c["path"], c["name"], c["read_kwargs"])
            wanted = c["splits"] or {s: s for s in SPLITS}
            return datasets.DatasetDict({ours: dd[theirs] for ours, theirs in wanted.items()
                                         if theirs is not None and theirs in dd})
        files = {split: str(p) for split, p in c["files"].items() if p}
        dd = read_files(files, c["format"], c["read_kwargs"])
        for split, n in multiline_rows(files, dd, c["format"]).items():
            message = (f"{split}: {n} rows of {files[split]} span several lines: quoted fields with "
                       f"line breaks, or a stray quote that merged rows")
            if c["strict"]:
                raise DataError(f"{message}; data.strict=true refuses them")
            log.warning("%s; check them, or set data.strict=true to refuse such files", message)
            self.count("multiline_rows", split, n)
        return dd

    def standardize(self, dd: datasets.DatasetDict) -> datasets.DatasetDict:
        """Keep text, text_pair and labels (renamed), cleaned; drop unusable rows with a count
        (or refuse them under data.strict); count, and optionally drop, duplicates."""
        c = self.cfg
        wanted = [c["text_column"], c["label_column"]] + (
            [c["text_pair_column"]] if c["text_pair_column"] else [])
        for split, ds in dd.items():
            missing = [col for col in wanted if col not in ds.column_names]
            if missing:
                key = {c["text_column"]: "text_column", c["label_column"]: "label_column"}.get(
                    missing[0], "text_pair_column")
                raise DataError(f"data.{key}={missing[0]!r} is not a column of the {split} data; "
                                f"its columns are: {', '.join(ds.column_names)}")
        clean = cleaner(c["clean"])
        pair = c["text_pair_column"]

        def standard(batch):
            raw = batch[c["text_column"]]
            out = {"text": [clean(t) for t in raw], "labels": batch[c["label_column"]]}
            changed = [str(r) != t for r, t in zip(raw, out["text"])]
            if pair:
                out["text_pair"] = [clean(t) for t in batch[pair]]
                changed = [ch or str(r) != t for ch, r, t in
                           zip(changed, batch[pair], out["text_pair"])]
            out["changed"] = changed
            return out

        out = {}
        for split, ds in dd.items():
            ds = ds.map(standard, batched=True, remove_columns=ds.column_names,
                        desc=f"clean {split}")
            n = len(ds)
            self.count("cleaned", split, sum(ds["changed"]))
            ds = ds.remove_columns("changed")
            usable = [bool(t) and not is_missing(y) for t, y in zip(ds["text"], ds["labels"])]
            if not all(usable):
                first = usable.index(False)
                if c["strict"]:
                    raise DataError(f"{split} data: {n - sum(usable)} of {n} rows have blank text "
                                    f"or a missing/NaN label (the first is data row {first + 1}); "
                                    f"data.strict=true refuses them (false: drop and count them)")
                ds = ds.select([i for i, ok in enumerate(usable) if ok])
                log.warning("%s: dropped %d of %d rows with blank text or a missing label (the "
                            "first is data row %d)", split, n - len(ds), n, first + 1)
                self.count("dropped", split, n - len(ds))
            if len(ds) == 0:
                raise DataError(f"the {split} data is empty after dropping blank rows and missing "
                                f"labels (columns {c['text_column']!r}, {c['label_column']!r})")
            out[split] = self.duplicates(split, ds)
        return datasets.DatasetDict(out)

    def text_keys(self, ds: datasets.Dataset) -> list:
        """What makes two rows the same input: the text, or the (text, text_pair) pair."""
        if self.cfg["text_pair_column"]:
            return list(zip(ds["text"], ds["text_pair"]))
        return list(ds["text"])

    def leakage(self, dd: datasets.DatasetDict) -> None:
        """Count evaluation rows whose text (and pair) also occurs in train: they overstate the
        scores. Done after the split, so carved validation/test splits are checked too."""
        seen = set(self.text_keys(dd["train"]))
        for split, ds in dd.items():
            n = sum(k in seen for k in self.text_keys(ds)) if split != "train" else 0
            if n:
                log.warning("%s: %d of %d rows also occur in train", split, n, len(ds))
                self.count("also_in_train", split, n)

    def duplicates(self, split: str, ds: datasets.Dataset) -> datasets.Dataset:
        """Count rows whose text (and pair) occurred earlier in the split, and those among them
        with another label; drop them (keeping the first) under data.drop_duplicates."""
        keys = self.text_keys(ds)
        first: dict = {}
        repeats, conflicts = [], 0
        labels = list(ds["labels"])
        for i, key in enumerate(keys):
            if key in first:
                repeats.append(i)
                conflicts += str(labels[first[key]]) != str(labels[i])
            else:
                first[key] = i
        if not repeats:
            return ds
        self.count("duplicates", split, len(repeats))
        self.count("duplicates_with_another_label", split, conflicts)
        action = "dropped" if self.cfg["drop_duplicates"] else "kept (data.drop_duplicates=true drops them)"
        log.warning("%s: %d rows repeat an earlier text (%d of them with another label); %s",
                    split, len(repeats), conflicts, action)
        if self.cfg["drop_duplicates"]:
            gone = set(repeats)
            ds = ds.select([i for i in range(len(ds)) if i not in gone])
        return ds

    def count(self, what: str, split: str, n: int) -> None:
        """The data report (metrics.json "data"): what happened to how many rows, per split."""
        if n:
            self.report.setdefault(what, {})[split] = int(n)

    def mixed_labels(self, split: str, values: list) -> None:
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
        if self.cfg["strict"]:
            raise DataError(f"{message}; data.strict=true refuses them")
        log.warning("%s", message)
        self.count("mixed_label_types", split, len(kinds[rare]))

    def encode_labels(self, dd: datasets.DatasetDict, task: str) -> datasets.DatasetDict:
        """Class names <-> ids from the training labels; other splits may only use those names."""
        if task == "regression":
            self.labels = []
            try:
                return dd.cast_column("labels", datasets.Value("float32"))
            except (ValueError, TypeError) as e:
                raise DataError(f"data.label_column={self.cfg['label_column']!r} has values that "
                                f"are not numbers, so it cannot be a regression target") from e
        for split in dd:
            if task != "multilabel":
                self.mixed_labels(split, list(dd[split]["labels"]))
        given = self.cfg["labels"]  # a trained model's label names (eval on a new file)
        self.labels = list(given) if given is not None else label_names(
            list(dd["train"]["labels"]), task)
        ids = {name: i for i, name in enumerate(self.labels)}
        for split in dd:
            values = list(dd[split]["labels"])
            seen = {str(v) for row in values for v in row} if task == "multilabel" else {
                str(v) for v in values}
            unknown = sorted(seen - ids.keys())
            if unknown:
                raise DataError(f"label {unknown[0]!r} in the {split} data never occurs in training;"
                                f" training labels: {', '.join(self.labels)}")

        def to_ids(batch):
            if task == "multilabel":
                hot = [[0.0] * len(ids) for _ in batch["labels"]]
                for row, names in zip(hot, batch["labels"]):
                    for n in names:
                        row[ids[str(n)]] = 1.0
                return {"labels": hot}
            return {"labels": [ids[str(v)] for v in batch["labels"]]}

        feature = (datasets.Sequence(datasets.Value("float32")) if task == "multilabel"
                   else datasets.ClassLabel(names=self.labels))
        return datasets.DatasetDict({
            split: ds.map(to_ids, batched=True,
                          features=datasets.Features({**ds.features, "labels": feature}))
            for split, ds in dd.items()})

    def split(self, dd: datasets.DatasetDict, task: str) -> datasets.DatasetDict:
        """Carve missing validation/test splits out of train: seeded, stratified for classes."""
        c = self.cfg
        n = len(dd["train"])
        stratify = "labels" if task == "classification" else None
        for split, frac in (("test", c["test_size"]), ("validation", c["val_size"])):
            if split in dd or not frac or (split == "validation" and c["cv"]):
                continue
            k = max(1, round(frac * n))
            try:
                parts = dd["train"].train_test_split(test_size=k, seed=c["seed"],
                                                     stratify_by_column=stratify)
            except ValueError as e:
                raise DataError(f"cannot carve a {k}-row {split} split out of {len(dd['train'])} "
                                f"training rows ({e}); give data.{split}_file or more data") from e
            dd["train"], dd[split] = parts["train"], parts["test"]
        if c["cv"]:
            if "validation" in dd:
                raise ConfigError("cv makes its validation folds out of data.train_file; drop "
                                  "data.validation_file (or train without cv)")
            dd["train"], dd["validation"] = fold(dd["train"], *c["cv"], task, c["seed"])
        if "validation" not in dd:
            raise ConfigError("there is no validation split: give data.validation_file or set "
                              "data.val_size to a fraction in (0, 1)")
        return dd

    def tokenize(self, dd: datasets.DatasetDict) -> datasets.DatasetDict:
        tok, max_length, pair = self.tokenizer, self.cfg["max_length"], self.cfg["text_pair_column"]

        def encode(batch):
            full = tok(batch["text"], batch["text_pair"] if pair else None, truncation=False)
            enc = tok(batch["text"], batch["text_pair"] if pair else None, truncation=True,
                      max_length=max_length)
            enc["length"] = [len(x) for x in enc["input_ids"]]
            enc["truncated"] = [len(x) > max_length for x in full["input_ids"]]
            return enc

        dd = datasets.DatasetDict({s: ds.map(encode, batched=True, desc=f"tokenize {s}")
                                   for s, ds in dd.items()})
        for split, ds in dd.items():
            n = sum(ds["truncated"])
            if n:
                log.info("%s: %d of %d rows truncated to max_length=%d", split, n, len(ds),
                         max_length)
                self.count("truncated", split, n)
        return dd

    def build(self) -> datasets.DatasetDict:
        dd = self.read()
        if self.cfg["labels"] is not None and "train" not in dd:  # only scoring a given file
            dd = self.standardize(dd)
            self.task = self.cfg["task"] or infer_task(next(iter(dd.values())).features["labels"])
            return self.tokenize(self.encode_labels(dd, self.task))
        if "train" not in dd:
            raise DataError(f"the data has no train split; its splits are: {', '.join(dd)}")
        c = self.cfg
        if c["max_samples"]:
            dd["train"] = dd["train"].shuffle(seed=c["seed"]).select(
                range(min(c["max_samples"], len(dd["train"]))))
        dd = self.standardize(dd)
        self.task = c["task"] or infer_task(dd["train"].features["labels"])
        dd = self.encode_labels(dd, self.task)
        dd = self.split(dd, self.task)
        self.leakage(dd)
        return self.tokenize(dd)

    # ---- cache ----------------------------------------------------------------------------
    def cache_key(self) -> str:
        """Changes with the data config, the input files' size and mtime, and the tokenizer."""
        stats = {s: [str(Path(p).resolve()), os.path.getsize(p), os.path.getmtime(p)]
                 for s, p in self.cfg["files"].items() if p and Path(p).is_file()}
        tok = self.tokenizer
        tok_id = tok.backend_tokenizer.to_str() if tok.is_fast else repr(tok.get_vocab())
        blob = json.dumps([CACHE_VERSION, self.cfg, stats, type(tok).__name__,
                           hashlib.sha256(tok_id.encode()).hexdigest()], sort_keys=True,
                          default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def prepare_data(self) -> None:
        folder = self.cache_folder
        if (folder / "meta.json").exists():
            return
        dd = self.build()
        tmp = folder.with_name(f"{folder.name}.tmp{os.getpid()}")
        dd.save_to_disk(str(tmp))
        (tmp / "meta.json").write_text(json.dumps({"task": self.task, "labels": self.labels,
                                                   "report": self.report}))
        try:
            tmp.rename(folder)  # atomic: a half-written cache is never read
        except OSError:  # another process finished the same cache first
            shutil.rmtree(tmp, ignore_errors=True)

    def setup(self, stage: str | None = None) -> None:
        if self.dataset is not None:
            return
        folder = self.cache_folder
        if not (folder / "meta.json").exists():
            self.prepare_data()
        else:
            log.info("tokenized data from cache %s", folder)
        meta = json.loads((folder / "meta.json").read_text())
        self.task, self.labels, self.report = meta["task"], meta["labels"], meta["report"]
        if self.report:  # on every run, cached or not: what happened to which rows
            log.info("data: %s", "; ".join(f"{what} {counts}" for what, counts in self.report.items()))
        dd = datasets.load_from_disk(str(folder))
        self.texts = {s: list(ds["text"]) for s, ds in dd.items()}  # for error analysis
        self.dataset = datasets.DatasetDict({
            s: ds.select_columns([c for c in MODEL_INPUTS + ("length",) if c in ds.column_names])
            for s, ds in dd.items()})

    @property
    def num_labels(self) -> int:
        return 1 if self.task == "regression" else len(self.labels)

    # ---- batches --------------------------------------------------------------------------
    def collate(self, features: list[dict]) -> dict[str, torch.Tensor]:
        rows = [{k: v for k, v in f.items() if k != "length"} for f in features]
        return self.collator(rows)

    def loader(self, ds, batch_size: int, sampler=None) -> DataLoader:
        multiple = self.pad_to_multiple_of
        trainer = self.trainer
        if multiple is None and trainer is not None and trainer.strategy.root_device.type == "cuda":
            multiple = 8  # tensor cores want multiples of 8; on a CPU it only adds padding
        if multiple != self.collator.pad_to_multiple_of:
            self.collator = DataCollatorWithPadding(self.tokenizer, pad_to_multiple_of=multiple)
        # A generator of its own: creating an iterator then leaves the global RNG (dropout) alone,
        # so that a resumed run draws the same dropout masks as one never interrupted.
        return DataLoader(ds, batch_size=batch_size, sampler=sampler, collate_fn=self.collate,
                          num_workers=self.num_workers,
                          generator=torch.Generator().manual_seed(self.seed))

    def train_dataloader(self) -> DataLoader:
        ds = self.dataset["train"]
        trainer = self.trainer
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        # length-grouped batches (far less padding) or plain shuffling, by (seed, epoch); under
        # DDP, groups of the global batch dealt out to the processes
        sampler = EpochSampler(len(ds), self.seed, self.batch_size * world,
                               list(ds["length"]) if self.group_by_length else None, rank, world)
        if self.resume_at:  # a checkpoint's place: continue its epoch after its last batch
            epoch, done = self.resume_at
            batches = math.ceil(len(ds) / sampler.batch_size)  # sampler.batch_size: all processes'
            sampler.set_epoch(epoch if done < batches else epoch + 1)
            sampler.skip = done * sampler.batch_size if done < batches else 0
            self.resume_at = None
        return self.loader(ds, self.batch_size, sampler)

    def state_dict(self) -> dict:
        """Where training is in the epoch, saved in checkpoints (Lightning calls this)."""
        trainer = self.trainer
        if trainer is None or trainer.state.fn != "fit":
            return {}
        progress = trainer.fit_loop.epoch_loop.batch_progress.current
        return {"epoch": trainer.current_epoch, "batches_done": progress.processed}

    def load_state_dict(self, state: dict) -> None:
        if state:
            self.resume_at = (state["epoch"], state["batches_done"])

    def eval_order(self, split: str) -> list[int]:
        """Rows sorted by length: less padding, same metrics."""
        lengths = list(self.dataset[split]["length"])
        return sorted(range(len(lengths)), key=lengths.__getitem__)

    def eval_dataloader(self, split: str) -> DataLoader:
        ds = self.dataset[split].select(self.eval_order(split))
        return self.loader(ds, self.eval_batch_size)

    def val_dataloader(self) -> DataLoader:
        return self.eval_dataloader("validation")

    def test_dataloader(self) -> DataLoader:
        return self.eval_dataloader("test")


def fold(ds: datasets.Dataset, folds: int, index: int, task: str, seed: int):
    """(train, validation) of fold `index` of `folds`: seeded, stratified by class for
    single-label classification; a regression or multi-label target has no classes to
    stratify by, so its folds are a seeded random partition."""
    from sklearn.model_selection import KFold, StratifiedKFold

    labels = ds["labels"]
    if task == "classification":
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


def from_config(cfg, **overrides) -> TextDataModule:
    """The data module of a composed train config (`data` plus the top-level tokenizer,
    max_length, batch_size and seed); training, eval.py and shrink.py build it the same way."""
    from hydra.utils import instantiate

    return instantiate(cfg.data, **{"tokenizer": cfg.model.tokenizer, "max_length": cfg.max_length,
                                    "batch_size": cfg.batch_size, "seed": cfg.seed,
                                    "cv": (cfg.cv, cfg.cv_fold) if cfg.get("cv_fold") is not None
                                    else None,
                                    # the key the user set, for an error naming it
                                    "tokenizer_key": "model.tokenizer" if cfg.model.tokenizer
                                    != cfg.model.name_or_path else "model.name_or_path",
                                    **overrides})
