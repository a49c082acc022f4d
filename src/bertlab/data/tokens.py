"""Tokenize and cache: token ids per row (with lengths and truncation counted), kept on disk under
a key of everything that shaped them, so the next run with the same data starts at once."""
from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import logging
import os
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa

from bertlab.data.hygiene import count, processes
from bertlab.files import written_whole

log = logging.getLogger(__name__)

CACHE_VERSION = 8  # bump when the cached layout (or what a config reads as) changes


def encode_texts(tokenizer, texts: list[str], pairs: list[str] | None, max_length: int
                 ) -> tuple[dict[str, list], list[bool]]:
    """({"input_ids"[, "token_type_ids"]}, whether truncation cut each row) of cleaned texts (and
    their second texts), truncated to `max_length`: the one text-to-ids function of bertlab. The
    training cache, predict.py, serve.py, explanations, the distillation teacher and the ONNX
    backend all encode through it (long_text=windows through windows.encode), so the same text
    gives the same ids everywhere; the collator adds the attention mask."""
    rust = truncating(tokenizer, max_length)
    if rust is not None:  # the ids tokenizer(...) gives, without its per-row Python work
        encodings = rust.encode_batch_fast(list(zip(texts, pairs)) if pairs else list(texts))
        enc = {"input_ids": [e.ids for e in encodings]}
        if pairs:
            enc["token_type_ids"] = [e.type_ids for e in encodings]
        return enc, [bool(e.overflowing) for e in encodings]  # what truncation cut off
    found = tokenizer(texts, pairs, truncation=True, max_length=max_length,
                      return_attention_mask=False, return_token_type_ids=pairs is not None)
    enc = {k: found[k] for k in ("input_ids", "token_type_ids") if k in found}
    return enc, [len(x) > max_length for x in tokenizer(texts, pairs)["input_ids"]]


def tokenize(dd: datasets.DatasetDict, tokenizer, max_length: int, report: dict,
             windows: dict | None = None, num_proc: int | None = 1) -> datasets.DatasetDict:
    """input_ids (and token_type_ids for pairs; the collator adds the attention mask) truncated to
    `max_length`, each row's `length`, and whether it was cut; or, with `windows`, one row per
    window (windows.encode) holding its document's index and label. A slow tokenizer runs in
    `num_proc` processes, a fast one in this process on all cores."""
    if windows:
        return tokenize_windows(dd, tokenizer, max_length, report, windows["stride"])

    rust = truncating(tokenizer, max_length)

    def encode(batch: pa.Table) -> pa.Table:
        """The batch with input_ids (token_type_ids), length and truncated added; Arrow in and
        out, so that the text and label columns are not converted to Python and back."""
        texts = batch.column("text").to_pylist()
        pairs = batch.column("text_pair").to_pylist() if "text_pair" in batch.column_names else None
        enc, cut = encode_texts(tokenizer, texts, pairs, max_length)
        ids, types = enc["input_ids"], enc.get("token_type_ids")
        lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
        batch = batch.append_column("input_ids", int_lists(ids, lengths, np.int32))
        if types is not None:
            batch = batch.append_column("token_type_ids", int_lists(types, lengths, np.int8))
        return batch.append_column("length", pa.array(lengths)).append_column("truncated", pa.array(cut))

    # A fast tokenizer runs in this process on all cores (Rust threads: 25k rows/s on 2 cores, where
    # two processes of one thread each gave 17k); a slow one in data.num_proc processes.
    procs = 1 if rust is not None else num_proc
    tok_id = hashlib.sha256(rust.to_str().encode()).hexdigest() if rust is not None else None

    def fingerprint(ds):  # given, where datasets would pickle the tokenizer to hash it (slow)
        return None if tok_id is None else hashlib.sha256(
            f"{ds._fingerprint}|{max_length}|{tok_id}|{CACHE_VERSION}".encode()).hexdigest()[:16]

    with rust_threads():
        dd = datasets.DatasetDict({
            s: ds.with_format("arrow").map(encode, batched=True, desc=f"tokenize {s}",
                                           num_proc=processes(procs, len(ds)),
                                           new_fingerprint=fingerprint(ds)).with_format(None)
            for s, ds in dd.items()})
    for split, ds in dd.items():
        n = sum(ds["truncated"][:])
        if n:
            log.info("%s: %d of %d rows truncated to max_length=%d", split, n, len(ds), max_length)
            count(report, "truncated", split, n)
    return dd


@contextlib.contextmanager
def rust_threads():
    """The Rust tokenizer's threads on for this block: train.py turns them off (forked workers stay
    quiet), and a datasets map with num_proc leaves them off in the process's environment after
    it (it restores os.environ, not the C environment the Rust library reads): 1.6x slower."""
    before = os.environ.get("TOKENIZERS_PARALLELISM")
    os.environ["TOKENIZERS_PARALLELISM"] = "true"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("TOKENIZERS_PARALLELISM")
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = before


def int_lists(rows: list[list[int]], lengths: np.ndarray, dtype) -> pa.ListArray:
    """An Arrow list column of the rows, built from one flat array (4x faster than pa.array)."""
    offsets = np.zeros(len(rows) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    flat = np.fromiter(itertools.chain.from_iterable(rows), dtype=dtype, count=int(offsets[-1]))
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat))


def truncating(tokenizer, max_length: int):
    """A copy of a fast tokenizer's Rust tokenizer that truncates as `tokenizer(..., truncation=True,
    max_length=max_length)` does (longest first), without padding; None for a slow tokenizer.
    Its encode_batch_fast (no character offsets) gives the same ids at 1.9x the rows/s of calling
    the tokenizer (measured: 38k vs 20k rows/s on 2 cores). Made once per tokenizer and length."""
    if not tokenizer.is_fast:
        return None
    made = getattr(tokenizer, "_bertlab_truncating", {})
    if max_length not in made:
        from tokenizers import Tokenizer

        rust = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
        rust.no_padding()
        rust.enable_truncation(max_length, strategy="longest_first")
        made[max_length] = rust
        tokenizer._bertlab_truncating = made
    return made[max_length]


def tokenize_windows(dd: datasets.DatasetDict, tokenizer, max_length: int, report: dict,
                     stride: int) -> datasets.DatasetDict:
    """One row per window, each with its document's text and labels, `doc` (the document's row in
    its split) and `window` (its place in the document); the documents and windows counted."""
    from bertlab.data.windows import encode as encode_windows

    def encode(batch, indices):
        pairs = batch["text_pair"] if "text_pair" in batch else None
        enc, cut = encode_windows(tokenizer, batch["text"], pairs, max_length, stride)
        docs = enc["doc"]
        enc["doc"] = [indices[d] for d in docs]
        for key in ("text", "text_pair", "labels", "labeled", "row"):
            if key in batch:
                enc[key] = [batch[key][d] for d in docs]
        enc["length"] = [len(x) for x in enc["input_ids"]]
        enc["cut"] = [cut if i == 0 else 0 for i in range(len(docs))]  # (summed below)
        return enc

    out = {}
    for split, ds in dd.items():
        out[split] = ds.map(encode, batched=True, with_indices=True, remove_columns=ds.column_names,
                            desc=f"tokenize {split} into windows")
        documents, windows = len(ds), len(out[split])
        windowed = out[split]["window"][:].count(1)  # documents with a second window
        report.setdefault("windows", {})[split] = {
            "documents": documents, "windowed": windowed, "windows": windows,
            "mean_per_document": round(windows / max(documents, 1), 3)}
        log.info("%s: %d of %d documents took more than one window of %d tokens (stride %d); "
                 "%.2f windows per document", split, windowed, documents, max_length, stride,
                 windows / max(documents, 1))
        count(report, "truncated", split, sum(out[split]["cut"][:]))
    return datasets.DatasetDict(out)


def cache_key(c: dict, tokenizer) -> str:
    """Changes with the data config `c`, the input files' size and mtime, and the tokenizer."""
    stats = {s: [str(Path(p).resolve()), os.path.getsize(p), os.path.getmtime(p)]
             for s, p in c["files"].items() if p and Path(p).is_file()}
    tok_id = tokenizer.backend_tokenizer.to_str() if tokenizer.is_fast else repr(tokenizer.get_vocab())
    blob = json.dumps([CACHE_VERSION, c, stats, type(tokenizer).__name__,
                       hashlib.sha256(tok_id.encode()).hexdigest()], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def save(folder: Path, dd: datasets.DatasetDict, meta: dict) -> None:
    """The tokenized splits and their meta.json, whole or not at all (another process that
    finished the same cache first wins)."""
    try:
        with written_whole(folder) as tmp:
            dd.save_to_disk(str(tmp))
            (tmp / "meta.json").write_text(json.dumps(meta))
    except OSError:
        if not cached(folder):
            raise


def cached(folder: Path) -> bool:
    """Whether the cache is whole (meta.json is written last, inside the renamed folder)."""
    return (folder / "meta.json").exists()


def load(folder: Path) -> tuple[datasets.DatasetDict, dict]:
    """(splits, meta) from a whole cache."""
    return datasets.load_from_disk(str(folder)), json.loads((folder / "meta.json").read_text())
