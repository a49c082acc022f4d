"""DataConfig: the data config's keys, typed (conf/data/base.yaml says what each does)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DataConfig:
    """The data config's keys, typed: what a TextDataModule is built from (conf/data/base.yaml says
    what each does; Hydra passes them as keywords, and TextDataModule(**keys) builds this)."""
    source: str = "files"
    train_file: str | None = None
    validation_file: str | None = None
    test_file: str | None = None
    path: str | None = None
    name: str | None = None
    splits: dict | None = None
    format: str | None = None
    read_kwargs: dict | None = None
    text_column: str = "text"
    text_pair_column: str | None = None
    label_column: str = "label"
    task: str | None = None
    clean: list[str] | tuple = ("normalize_whitespace",)
    val_size: float = 0.1
    max_val_rows: int | None = None
    test_size: float = 0.1
    max_samples: int | None = None
    tokenizer: str | None = None
    max_length: int = 128
    batch_size: int = 32
    eval_batch_size: int | None = None
    group_by_length: bool = True
    num_workers: int = 0
    seed: int = 0
    run_seed: int | None = None  # one run of average_runs: its validation carve and batch order (None: seed)
    cache_dir: str | None = None
    labels: list[str] | None = None
    strict: bool = False
    drop_duplicates: bool = False
    pad_to_multiple_of: int | None = None
    cv: tuple[int, int] | None = None
    trust_val_rows: int = 0  # a carved validation split under this trains instead (from_config)
    tokenizer_key: str = "model.tokenizer"
    long_text: str = "truncate"
    window_stride: int | None = None
    window_pool: str = "mean"
    thresholds: str | float | None = None  # multi-label decisions, read after training
    unlabeled_file: str | None = None
    num_proc: int | None = None
    exclude_rows: str | None = None
    exclude_top: int | None = None
    relabel_rows: str | None = None

    def cache_fields(self) -> dict:
        """What the tokenized cache is keyed by: the keys that change the rows, their labels or
        their ids (not the batch size, workers or processes)."""
        c = dict(
            source=self.source, files={"train": self.train_file, "validation": self.validation_file,
                                       "test": self.test_file},
            path=self.path, name=self.name, splits=dict(self.splits or {}), format=self.format,
            read_kwargs=dict(self.read_kwargs or {}), text_column=self.text_column,
            text_pair_column=self.text_pair_column, label_column=self.label_column, task=self.task,
            clean=list(self.clean), val_size=self.val_size, max_val_rows=self.max_val_rows,
            test_size=self.test_size, max_samples=self.max_samples, max_length=self.max_length,
            seed=self.seed, labels=self.labels, strict=self.strict,
            drop_duplicates=self.drop_duplicates, cv=list(self.cv) if self.cv else None)
        if self.run_seed is not None:  # (average_runs: each run carves its own validation rows)
            c["run_seed"] = self.run_seed
        if self.trust_val_rows:  # (in the key only then: other runs keep their caches)
            c["trust_val_rows"] = self.trust_val_rows
        if self.unlabeled_file:  # (in the key, its size and time too, only when given)
            c["files"]["unlabeled"] = self.unlabeled_file
        for key in ("exclude_rows", "exclude_top", "relabel_rows"):  # label_issues.csv (label_fixes.py)
            if getattr(self, key) is not None:
                c[key] = getattr(self, key)
                if key != "exclude_top":
                    c["files"][key] = getattr(self, key)
        return c
