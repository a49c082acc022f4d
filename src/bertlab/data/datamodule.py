"""TextDataModule: the data's way through, read -> clean and count -> labels and splits ->
tokenize and cache -> batches. The stages before batches are plain functions (sources, hygiene,
labels, tokens); this module runs them once per data config and serves the batches."""
from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import datasets
import lightning as L
import torch
from torch.utils.data import DataLoader
from transformers import AutoTokenizer, DataCollatorWithPadding

from bertlab.data import tokens, windows
from bertlab.data.config import DataConfig
from bertlab.data.hygiene import PARALLEL_FROM, leakage, standardize
from bertlab.data.label_fixes import apply_label_fixes
from bertlab.data.labels import as_integers, carve, encode_labels, integers_with_gaps, task_named
from bertlab.data.sampler import EpochSampler
from bertlab.data.sources import check_arguments, read
from bertlab.data.tokens import tokenize
from bertlab.data.unlabeled import read_unlabeled, with_unlabeled
from bertlab.errors import ConfigError, DataError
from bertlab.hub import check_max_length, from_pretrained
from bertlab.task import TASKS, Task

log = logging.getLogger(__name__)

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids", "labels")
WINDOW_KEYS = ("doc", "window")  # long_text=windows: each row's document and place in it


class TextDataModule(L.LightningDataModule):
    """Loads, cleans, splits and tokenizes text once (cached on disk) and serves padded batches;
    built from a DataConfig, or from its keys as keywords (what Hydra's `_target_` passes)."""

    def __init__(self, config: DataConfig | None = None, **keys) -> None:
        super().__init__()
        c = self.config = config or DataConfig(**keys)
        check_arguments(c.source, c.task, c.train_file, c.test_file, c.labels, c.batch_size,
                        c.max_length, c.val_size, c.test_size, c.num_proc, c.max_val_rows)
        self.cfg = c.cache_fields()
        self.batch_size = c.batch_size
        self.eval_batch_size = c.eval_batch_size or 2 * c.batch_size
        self.group_by_length = c.group_by_length
        self.num_workers = c.num_workers
        self.num_proc = c.num_proc  # cleaning and tokenizing processes (not in the cache key)
        self.seed = c.seed if c.run_seed is None else c.run_seed  # (batch order)
        self.cache_root = Path(os.path.expanduser(c.cache_dir or "~/.cache/bertlab"))
        self.tokenizer = from_pretrained(AutoTokenizer, c.tokenizer, what=c.tokenizer_key)
        check_max_length(c.max_length, self.tokenizer.model_max_length)
        self.windows = windows.settings(c.long_text, c.window_stride, c.window_pool, c.max_length,
                                        self.tokenizer, pair=c.text_pair_column is not None)
        if self.windows:  # (in the cache key only then: truncating runs keep their caches)
            self.cfg["windows"] = self.windows["stride"]
        self.collator = DataCollatorWithPadding(self.tokenizer)  # pads each batch to its longest
        self.pad_to_multiple_of = c.pad_to_multiple_of  # None: 8 on a GPU, nothing on a CPU
        # Keyed before the first call: tokenizing with truncation changes the tokenizer's state.
        self.cache_folder = self.cache_root / tokens.cache_key(self.cfg, self.tokenizer)
        self.dataset: datasets.DatasetDict | None = None
        self.labels: list[str] = []
        self.task: Task | None = None
        self.resume_at: tuple[int, int] | None = None  # (epoch, batches done) from a checkpoint
        self.report: dict[str, dict[str, int]] = {}  # rows dropped, duplicated, truncated, ...
        self.val_trained = 0  # rows a validation split too small to choose by would hold: they train

    # ---- the one-way pipeline: each stage is a plain function in its own module -------------
    def build(self) -> datasets.DatasetDict:
        """read a table -> clean and count -> labels and splits -> tokenize."""
        shown = datasets.is_progress_bar_enabled()
        datasets.disable_progress_bars()  # (reading a small file is no wait worth a bar)
        try:
            dd = read(self.cfg, self.report)
            cap = self.cfg["max_samples"]  # (sampled before it is cleaned and tokenized)
            if max(min(len(ds), cap) if split == "train" and cap else len(ds)
                   for split, ds in dd.items()) >= PARALLEL_FROM:  # big data: rate and ETA
                datasets.enable_progress_bars()
            return self.prepared(dd)
        finally:
            (datasets.enable_progress_bars if shown else datasets.disable_progress_bars)()

    def prepared(self, dd: datasets.DatasetDict) -> datasets.DatasetDict:
        """clean and count -> labels and splits -> tokenize, for the raw splits `dd`."""
        c, report = self.cfg, self.report
        gaps = [split for split, ds in dd.items() if c["task"] in (None, "classification")
                and integers_with_gaps(ds, c["label_column"])]  # (read before the gaps go)
        if c["labels"] is not None and "train" not in dd:  # only scoring a given file
            dd = as_integers(standardize(dd, c, report, self.num_proc), gaps)
            self.task = task_named(c["task"], next(iter(dd.values())).features["labels"])
            dd, self.labels = encode_labels(dd, self.task, c, report)
            return tokenize(dd, self.tokenizer, c["max_length"], report, self.windows, self.num_proc)
        if "train" not in dd:
            raise DataError(f"the data has no train split; its splits are: {', '.join(dd)}")
        whole = dd["train"]
        if c["max_samples"]:
            dd["train"] = dd["train"].shuffle(seed=c["seed"]).select(
                range(min(c["max_samples"], len(dd["train"]))))
        dd["train"] = apply_label_fixes(dd["train"], whole, c, report)  # (label_issues.csv's rows)
        dd = as_integers(standardize(dd, c, report, self.num_proc), gaps)
        self.task = task_named(c["task"], dd["train"].features["labels"])
        dd, self.labels = encode_labels(dd, self.task, c, report)
        dd = carve(dd, self.task, c, report)
        leakage(dd, report)
        if c["files"].get("unlabeled"):  # distillation: text the teacher alone labels
            dd["train"] = with_unlabeled(dd["train"], read_unlabeled(c), report)
        return tokenize(dd, self.tokenizer, c["max_length"], report, self.windows, self.num_proc)

    # ---- cache ----------------------------------------------------------------------------
    def prepare_data(self) -> None:
        if not tokens.cached(self.cache_folder):
            dd = self.build()
            tokens.save(self.cache_folder, dd, {"task": self.task.name, "labels": self.labels,
                                                "report": self.report})

    def setup(self, stage: str | None = None) -> None:
        if self.dataset is not None:
            return
        if tokens.cached(self.cache_folder):
            log.info("tokenized data from cache %s", self.cache_folder)
        else:
            self.prepare_data()
        dd, meta = tokens.load(self.cache_folder)
        self.task, self.labels, self.report = TASKS[meta["task"]], meta["labels"], meta["report"]
        # rows a validation split too small to choose by would have held: they train (carve)
        self.val_trained = self.report.get("validation", {}).get("not_carved_rows", 0)
        if self.report:  # on every run, cached or not: what happened to which rows
            log.info("data: %s", "; ".join(f"{what} {counts}" for what, counts in self.report.items()))
        # the texts stay on disk (memory-mapped) until error analysis or a teacher reads them
        self.raw = {s: ds.select_columns([c for c in ("text", "text_pair", "window", "row")
                                          if c in ds.column_names]) for s, ds in dd.items()}
        self.dataset = datasets.DatasetDict({
            s: ds.select_columns([c for c in MODEL_INPUTS + ("length", "labeled") + WINDOW_KEYS
                                  if c in ds.column_names]) for s, ds in dd.items()})
        if self.windows and not self.task.has_classes:
            if self.windows["pool"] != "mean":
                raise ConfigError(f"data.window_pool={self.windows['pool']} is for class scores; a "
                                  f"regression document's value is the mean of its windows' "
                                  f"(data.window_pool=mean)")
            log.info("regression with windows: a document's value is the mean of its windows' values")

    def texts(self, split: str, column: str = "text") -> list[str] | None:
        """Each document's text (or `text_pair`: its second text; None without pairs), in order."""
        ds = self.raw[split]
        if column not in ds.column_names:
            return None
        values = ds[column][:]  # (a document's windows all hold it)
        return [v for v, w in zip(values, ds["window"][:]) if w == 0] if self.windows else values

    def documents(self, split: str) -> int:
        """Rows of the split as read (with windows, each document once)."""
        ds = self.raw[split]
        return ds["window"][:].count(0) if self.windows else len(ds)

    def eval_texts(self, split: str) -> list[str]:
        """The split's texts in the order analysis.collect gives their predictions: by length
        (eval_order), or with windows by document."""
        texts = self.texts(split)
        return texts if self.windows else [texts[i] for i in self.eval_order(split)]

    @property
    def num_labels(self) -> int:
        return self.task.num_outputs(self.labels)

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
                               ds["length"][:] if self.group_by_length else None, rank, world)
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
        lengths = self.dataset[split]["length"][:]
        return sorted(range(len(lengths)), key=lengths.__getitem__)

    def eval_dataloader(self, split: str) -> DataLoader:
        ds = self.dataset[split].select(self.eval_order(split))
        return self.loader(ds, self.eval_batch_size)

    def val_dataloader(self) -> DataLoader | list:
        return self.eval_dataloader("validation") if "validation" in self.dataset else []

    def test_dataloader(self) -> DataLoader:
        return self.eval_dataloader("test")


def run_seed(cfg) -> int | None:
    """Run i of average_runs: seed + i (its validation carve, batch order, initialisation and
    dropout; the test carve and max_samples keep `seed`, so every run has the same test rows)."""
    index = cfg.get("average_run")
    return None if index is None else cfg.seed + index


def from_config(cfg, **overrides) -> TextDataModule:
    """The data module of a composed train config; training, eval.py and shrink.py build it the
    same way. The data config takes tokenizer, max_length, batch_size and seed from the top-level
    keys by interpolation (a run folder written before it did gets them here)."""
    from hydra.utils import instantiate

    shared = {"tokenizer": cfg.model.tokenizer, "max_length": cfg.max_length,
              "batch_size": cfg.batch_size, "seed": cfg.seed, "run_seed": run_seed(cfg)}
    given = {k: v for k, v in shared.items() if k not in cfg.data}
    from bertlab.training.budget import carved_val_trains  # (the budget's rule, read from cfg)

    return instantiate(cfg.data, **{**given, **overrides},
                       cv=(cfg.cv, cfg.cv_fold) if cfg.get("cv_fold") is not None else None,
                       trust_val_rows=carved_val_trains(cfg),
                       # the key the user set, for an error naming it
                       tokenizer_key="model.tokenizer" if cfg.model.tokenizer
                       != cfg.model.name_or_path else "model.name_or_path")
