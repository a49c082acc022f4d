"""Tokenize and cache: token ids per row (with lengths and truncation counted), kept on disk under
a key of everything that shaped them, so the next run with the same data starts at once."""
from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import datasets

from bertlab.data.hygiene import count, processes
from bertlab.files import written_whole

log = logging.getLogger(__name__)

CACHE_VERSION = 4  # bump when the cached layout changes


def tokenize(dd: datasets.DatasetDict, tokenizer, max_length: int, report: dict,
             windows: dict | None = None, num_proc: int | None = 1) -> datasets.DatasetDict:
    """input_ids (and token_type_ids for pairs; the collator adds the attention mask) truncated to
    `max_length`, each row's `length`, and whether it was cut; or, with `windows`, one row per
    window (windows.encode) holding its document's index and label. `num_proc` processes."""
    if windows:
        return tokenize_windows(dd, tokenizer, max_length, report, windows["stride"])

    def encode(batch):
        pair = batch["text_pair"] if "text_pair" in batch else None
        enc = tokenizer(batch["text"], pair, truncation=True, max_length=max_length,
                        return_attention_mask=False, return_token_type_ids=pair is not None)
        if enc.encodings is not None:  # a fast tokenizer keeps what truncation cut off
            cut = [bool(e.overflowing) for e in enc.encodings]
        else:
            cut = [len(x) > max_length for x in tokenizer(batch["text"], pair)["input_ids"]]
        enc = dict(enc)
        enc["length"] = [len(x) for x in enc["input_ids"]]
        enc["truncated"] = cut
        return enc

    dd = datasets.DatasetDict({s: ds.map(encode, batched=True, desc=f"tokenize {s}",
                                         num_proc=processes(num_proc, len(ds)))
                               for s, ds in dd.items()})
    for split, ds in dd.items():
        n = sum(ds["truncated"])
        if n:
            log.info("%s: %d of %d rows truncated to max_length=%d", split, n, len(ds), max_length)
            count(report, "truncated", split, n)
    return dd


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
        for key in ("text", "text_pair", "labels", "labeled"):
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
        windowed = sum(1 for w in out[split]["window"] if w == 1)  # documents with a second window
        report.setdefault("windows", {})[split] = {
            "documents": documents, "windowed": windowed, "windows": windows,
            "mean_per_document": round(windows / max(documents, 1), 3)}
        log.info("%s: %d of %d documents took more than one window of %d tokens (stride %d); "
                 "%.2f windows per document", split, windowed, documents, max_length, stride,
                 windows / max(documents, 1))
        count(report, "truncated", split, sum(out[split]["cut"]))
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
