"""predict(cfg): label new texts with a trained run; needs nothing but the run folder."""
from __future__ import annotations

import csv
import io
import json
import os
import sys
import time
from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path

import torch
from omegaconf import DictConfig
from tqdm import tqdm
from transformers import AutoTokenizer, DataCollatorWithPadding

from bertlab.checks import PREDICT_RANGES, check_ranges, check_read_kwargs
from bertlab.data.clean import cleaner
from bertlab.errors import ConfigError, DataError
from bertlab.files import lines_of, other_separator, utf16, written_whole
from bertlab.hub import from_pretrained
from bertlab.checkpoints import find_checkpoint, load_network

CHUNK = 2048  # texts read, predicted and written together: memory stays flat on any input size
LINES = ".txt"  # one text per line; every other format is a table, read as training reads it


def input_format(source: str) -> str:
    """`lines` (stdin, .txt) or `table` (the suffixes training reads); else one line."""
    from bertlab.data.sources import FORMATS

    if source == "-":
        return "lines"
    path = Path(source)
    if not path.is_file():
        raise ConfigError(f"input={source} " + ("is a folder; give a file (or - for stdin)"
                                                if path.is_dir() else "does not exist"))
    suffix = path.suffix.lower()
    if suffix == LINES:
        return "lines"
    if suffix not in FORMATS:
        raise ConfigError(f"input={source}: cannot read {suffix or 'a file without a suffix'}; "
                          f"give .txt (one text per line), "
                          f"{', '.join(s for s in FORMATS if s != LINES)}, or - for stdin")
    return "table"


def text_rows(source: str, columns: list[str], read_kwargs: dict | None = None
              ) -> Iterator[tuple[str, str | None]]:
    """(text, second text or None) of each row: the lines of a .txt file or of stdin (`-`, read
    whole), or the `columns` of a table read by training's own reader (data/sources.py)."""
    read_kwargs = dict(read_kwargs or {})
    if input_format(source) == "lines":
        if len(columns) > 1:
            raise DataError(f"input={source} is one text per line, but this model reads text "
                            f"pairs: give a table (.csv, .tsv, .jsonl, .json, .parquet) with "
                            f"columns {columns[0]!r} and {columns[1]!r}")
        unknown = sorted(set(read_kwargs) - {"encoding"})
        if unknown:
            raise ConfigError(f"read_kwargs.{unknown[0]} does not apply to one text per line; "
                              f"there only read_kwargs.encoding does")
        encoding = read_kwargs.get("encoding", "utf-8")
        name = "stdin" if source == "-" else f"input={source}"
        if source == "-":
            yield from ((t, None) for t in lines_of(sys.stdin.buffer, encoding, name))
            return
        path = Path(source)
        with as_utf8(path, utf16(path) and "encoding" not in read_kwargs) as f:
            yield from ((t, None) for t in lines_of(f, encoding, name))
        return
    table = read_table(source, columns, read_kwargs)
    for batch in table.iter(batch_size=CHUNK):
        values = [[field(v, c, source) for v in batch[c]] for c in columns]
        yield from zip(values[0], values[1] if len(values) > 1 else [None] * len(values[0]))


def read_table(source: str, columns: list[str], read_kwargs: dict):
    """The table `source` (a datasets.Dataset), read by training's reader; its columns checked."""
    import datasets

    from bertlab.data.sources import multiline_rows, read_files

    datasets.disable_progress_bars()
    files = {"input": source}
    table = read_files(files, None, read_kwargs, keys={"input": "input"},
                       kwargs_key="read_kwargs")
    spanning = multiline_rows(files, table, None).get("input")
    if spanning:  # legal in csv, but a quote left open makes one text of many lines
        print(f"warning: {spanning} text(s) of input={source} span several lines (quoted "
              f"line breaks, or a quote left open); each is predicted as one text",
              file=sys.stderr)
    table = table["input"]
    for key, column in zip(("text_column", "text_pair_column"), columns):
        if column not in table.column_names:
            names = table.column_names
            sep = other_separator(names)
            hint = (f"; separated by {sep!r}? set read_kwargs={{sep: {sep!r}}}" if sep else "")
            raise DataError(f"{key}={column!r} is not a column of {source}; its columns are: "
                            f"{', '.join(names) or '(none)'}{hint}")
    return table


def as_utf8(path: Path, wide: bool):
    """The file's bytes, opened; a UTF-16 (`wide`) file decoded whole and given as UTF-8."""
    return io.BytesIO(path.read_bytes().decode("utf-16").encode()) if wide else open(path, "rb")


def field(value, column: str, source: str) -> str:
    """A table cell as the text to predict ('' for a missing one: refused as blank)."""
    if isinstance(value, (list, dict)):  # (its repr would be predicted)
        raise DataError(f"column {column!r} of {source} holds a {type(value).__name__} "
                        f"({str(value)[:60]}), not text; give a column of strings")
    return "" if value is None else str(value)


def count_texts(rows: Iterable[tuple[str, str | None]], source: str) -> int:
    """The number of rows, read through once; blank texts refused (every row gets a prediction)."""
    n, blank, first = 0, 0, None
    for n, row in enumerate(rows, 1):
        if any(t is not None and not t.strip() for t in row):
            blank += 1
            first = first or n
    if not n:
        raise DataError(f"input={'stdin' if source == '-' else source} holds no texts")
    if blank:
        raise DataError(f"input={'stdin' if source == '-' else source} has {blank} blank text(s), "
                        f"the first at row {first}; remove them (every row gets a prediction)")
    return n


def read_texts(source: str, columns: list[str], read_kwargs: dict | None = None) -> list[tuple]:
    """All rows of `source` (text_rows), checked as count_texts does."""
    rows = list(text_rows(source, columns, read_kwargs))
    count_texts(rows, source)
    return rows


PRECISIONS = {"32": None, "bf16": torch.bfloat16}
BACKENDS = ("torch", "onnx")


def inference_precision(requested: str, backend: str, cuda: bool = False) -> tuple[str, str]:
    """(precision, why): `auto` is bf16 where training's precision=auto would pick bf16-mixed
    (native bf16: a CPU with AVX-512 BF16 or AMX, a GPU of compute capability 8+), else 32;
    always 32 for ONNX Runtime (its fast CPU path is an int8 export)."""
    from bertlab.hardware import choose_precision, hardware

    if requested != "auto":
        return requested, "set in precision"
    if backend == "onnx":
        return "32", "ONNX Runtime runs the export as it is"
    chosen, why = choose_precision("auto", hardware(cuda))
    return ("bf16" if chosen.startswith("bf16") else "32"), why


def model_precision(hparams: dict, precision: str, why: str, requested: str) -> tuple[str, str]:
    """An int8 model (shrink.py) runs its int8 layers as they are: no bf16 autocast around them."""
    if precision == "bf16" and (hparams.get("shrink") or {}).get("int8"):
        if requested != "auto":
            raise ConfigError("precision=bf16 does not apply to an int8 model (shrink.py int8=true); "
                              "use precision=32 or auto")
        return "32", "an int8 model (shrink.py) runs as it is"
    return precision, why


def check_backend(backend: str, precision: str, ckpt_path=None) -> None:
    if backend not in BACKENDS:
        raise ConfigError(f"backend={backend} is not valid; use {' or '.join(BACKENDS)}")
    if precision not in (*PRECISIONS, "auto"):
        raise ConfigError(f"precision={precision} is not valid; use auto, {' or '.join(PRECISIONS)}")
    if backend == "onnx" and precision not in ("32", "auto"):
        raise ConfigError(f"precision={precision} is for backend=torch; for faster ONNX use "
                          f"an int8 export (export.py format=onnx int8=true)")
    if backend == "onnx" and ckpt_path:
        raise ConfigError("ckpt_path is for backend=torch; with backend=onnx give run_dir=<the "
                          "run or its ONNX export folder>")


def trained_pair_column(run_dir, ckpt_path, backend: str = "torch") -> str | None:
    """What the model reads, from its folders alone (no model loaded): its run's second-text
    column, '' for single texts, None where no folder says (a checkpoint file on its own)."""
    from bertlab.runs import trained_pair_column as of_run

    if backend == "onnx":
        from bertlab.models.onnx_network import onnx_folder

        if not run_dir:
            raise ConfigError("backend=onnx needs run_dir=<the run, or its ONNX export folder>")
        meta = json.loads((onnx_folder(run_dir) / "bertlab.json").read_text())
        if "text_pair_column" in meta:
            return meta["text_pair_column"] or ""
        return of_run(Path(meta["checkpoint"]).parent.parent) if meta.get("pair") else ""
    if run_dir and of_run(run_dir) is not None:
        return of_run(run_dir)
    for folder in find_checkpoint(run_dir, ckpt_path).resolve().parents[1:4]:  # the run it is in
        if of_run(folder) is not None:  # (<run>/checkpoints/, <run>/shrink/<time>/)
            return of_run(folder)
    return None


def load_predictor(run_dir, ckpt_path, backend: str = "torch"):
    """(model, tokenizer): the checkpoint's network (torch) or the run's ONNX export; the
    model's `pair_column` is trained_pair_column's."""
    if backend == "onnx":
        from bertlab.models.onnx_network import OnnxNetwork, onnx_folder

        if not run_dir:
            raise ConfigError("backend=onnx needs run_dir=<the run, or its ONNX export folder>")
        model = OnnxNetwork(onnx_folder(run_dir))
    else:
        model = load_network(find_checkpoint(run_dir, ckpt_path))
    model.pair_column = trained_pair_column(run_dir, ckpt_path, backend)
    return model, from_pretrained(AutoTokenizer, model.hparams.model["tokenizer"],
                                  what="model.tokenizer")


def input_columns(trained: str | None, text_column: str, text_pair_column: str | None
                  ) -> list[str]:
    """The input's columns: the text, and for a model trained on pairs the second text (its
    run's own column, unless `text_pair_column` names another). `trained`: trained_pair_column's."""
    if text_pair_column and trained == "":
        raise ConfigError(f"text_pair_column={text_pair_column} is for a run trained on text pairs; "
                          f"this one read single texts: leave text_pair_column out")
    if trained and not text_pair_column:
        return [text_column, trained]
    return [text_column, text_pair_column] if text_pair_column else [text_column]


def check_threshold_applies(threshold, model) -> None:
    """threshold= decides multi-label predictions; elsewhere it would be ignored without a word."""
    if threshold is not None and not model.task.multi_hot:
        raise ConfigError(f"threshold={threshold} is for multi-label runs; this run is "
                          f"{model.task.name} (its label is the most probable class): leave "
                          f"threshold out")


@torch.inference_mode()
def predict_texts(model, tokenizer, texts: list[str], batch_size: int = 64,
                  progress: bool = False, precision: str = "32",
                  pairs: list[str] | None = None, device: str = "cpu",
                  windows: list[int] | None = None, logits: bool = False) -> torch.Tensor:
    """Probabilities (classes), sigmoid scores (multi-label) or values (regression), in order,
    on the CPU; `pairs`: each text's second text, for models trained on pairs; `device`: where
    the (torch) model is. A model trained with long_text=windows reads each text in windows and
    pools their logits; `windows`, if a list, receives each text's count of windows. `logits`:
    return the logits instead."""
    dtype = PRECISIONS[precision]
    device = torch.device(device)
    hp = model.hparams
    clean = cleaner(list(hp.clean))
    texts, pairs = [clean(t) for t in texts], [clean(t) for t in pairs] if pairs else None
    doc = None
    if hp.get("windows"):
        from bertlab.data.windows import encode

        enc, _ = encode(tokenizer, texts, pairs, hp.max_length, hp.windows["stride"])
        doc, _ = torch.tensor(enc.pop("doc")), enc.pop("window")
    else:
        enc = tokenizer(texts, pairs, truncation=True, max_length=hp.max_length)
    if windows is not None:
        windows.extend(torch.bincount(doc, minlength=len(texts)).tolist() if doc is not None
                       else [1] * len(texts))
    rows = [{k: enc[k][i] for k in enc} for i in range(len(enc["input_ids"]))]
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]["input_ids"]))  # less padding
    collate = DataCollatorWithPadding(tokenizer)
    out = [None] * len(rows)
    for start in tqdm(range(0, len(order), batch_size), disable=not progress, desc="predict"):
        idx = order[start:start + batch_size]
        batch = {k: v.to(device) for k, v in collate([rows[i] for i in idx]).items()}
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            found = model(**batch).float().cpu()
        for i, value in zip(idx, found):
            out[i] = value
    found = torch.stack(out)
    if doc is not None:
        from bertlab.data.windows import pool

        found = pool(found, doc, hp.windows["pool"])[0]
    return found if logits else model.task.scores(found)


def check_threshold(threshold) -> None:
    if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, (int, float))
                                  or not 0 < threshold < 1):
        raise ConfigError(f"threshold={threshold!r} is not valid; use a probability in (0, 1), or "
                          f"null for the run's own (thresholds.json, else 0.5)")


def result_rows(model, texts: list[str], scores: torch.Tensor, threshold: float | None = None,
                windows: list[int] | None = None) -> list[dict]:
    """One row per text; multi-label: the labels over `threshold`, or over the run's own
    thresholds (thresholds.json) when it is None, else 0.5; `windows`: each text's count of
    windows (a model trained with long_text=windows), added to its row."""
    labels, task = list(model.hparams.labels), model.task
    cuts = [threshold] * len(labels) if threshold is not None else (
        getattr(model, "thresholds", None) or [0.5] * len(labels))
    rows = []
    for text, s in zip(texts, scores.tolist()):
        if not task.has_classes:
            rows.append({"text": text, "value": s})
        elif task.multi_hot:
            chosen = [n for n, p, t in zip(labels, s, cuts) if p > t]
            rows.append({"text": text, "labels": chosen, **{f"p_{n}": p for n, p in zip(labels, s)}})
        else:
            best = max(range(len(s)), key=s.__getitem__)
            rows.append({"text": text, "label": labels[best], "confidence": s[best],
                         **{f"p_{n}": p for n, p in zip(labels, s)}})
    for row, n in zip(rows, windows or []):
        row["windows"] = n
    return rows


def scored_rows(model, tokenizer, texts: list[str], threshold: float | None = None,
                pairs: list[str] | None = None, **predict) -> tuple[list[dict], torch.Tensor]:
    """(result rows, scores) of `texts` (and their `pairs`): predict_texts with `predict`'s
    arguments, then result_rows; a model trained with long_text=windows adds each text's count
    of windows; a pair is in its row as text_pair."""
    windows = [] if model.hparams.get("windows") else None
    scores = predict_texts(model, tokenizer, texts, windows=windows, pairs=pairs, **predict)
    rows = result_rows(model, texts, scores, threshold, windows)
    for row, pair in zip(rows, pairs or []):
        row["text_pair"] = pair
        row.update({k: row.pop(k) for k in list(row) if k not in ("text", "text_pair")})  # (order)
    return rows, scores


def output_path(output: str, explain: bool = False) -> Path:
    """The output file, checked before any work: a known suffix, and nothing there yet."""
    path = Path(output)
    if path.suffix.lower() not in (".csv", ".jsonl"):
        raise ConfigError(f"output={output} must end in .csv or .jsonl")
    for p in (path, path.with_suffix(".html")) if explain else (path,):
        if p.exists():
            raise ConfigError(f"output {p} exists already and is kept; choose a new name: "
                              f"output=<new>.csv or .jsonl")
    return path


def json_line(row: dict) -> str:
    """One JSON line; the three line breaks json.dumps leaves raw (\x85, \u2028, \u2029) escaped,
    so that a reader splitting on any line break (str.splitlines) still gets one row per line."""
    text = json.dumps(row, ensure_ascii=False)
    for char in "\x85\u2028\u2029":
        text = text.replace(char, f"\\u{ord(char):04x}")
    return text + "\n"


def encoded(rows: list[dict], csv_file: bool, header: bool) -> bytes:
    """Rows as jsonl lines, or csv rows (lists joined by |) after a header when `header`."""
    if not csv_file:
        return "".join(json_line(r) for r in rows).encode("utf-8")
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]))
    if header:
        writer.writeheader()
    writer.writerows({k: "|".join(v) if isinstance(v, list) else v for k, v in r.items()}
                     for r in rows)
    return out.getvalue().encode("utf-8")


def started(path: Path, what: dict, resume: bool) -> tuple[int, int]:
    """(rows, bytes) an earlier prediction into `path` wrote before it stopped: (0, 0) for a new
    one. Its `<output>.partial` is continued only with resume=true, and only for the same `what`
    (input file, model, settings)."""
    partial, record = unfinished(path)
    if not partial.exists():
        if resume and what["input"] == "-":
            raise ConfigError("resume=true needs input=<a file>; stdin cannot be read again")
        return 0, 0
    if not resume:
        raise ConfigError(f"output {path} has an unfinished prediction in {partial}; continue it "
                          f"with resume=true, or remove it to start again")
    if not record.exists():  # (its rows may be anyone's: never truncated)
        raise ConfigError(f"output {partial} has no record of the prediction that wrote it "
                          f"({record.name}), so it cannot be continued; move it away (it is kept) "
                          f"or choose a new output")
    saved = json.loads(record.read_text())
    for key, value in what.items():
        if saved["for"].get(key) != value:
            raise ConfigError(f"output {partial} holds rows of another prediction ({key}="
                              f"{saved['for'].get(key)}, not {value}); rerun it as it was, or "
                              f"choose a new output")
    return saved["rows"], saved["bytes"]


def unfinished(path: Path) -> tuple[Path, Path]:
    """The rows written so far, and the record of how far they go."""
    return path.with_name(path.name + ".partial"), path.with_name(path.name + ".partial.json")


def identity(cfg: DictConfig) -> dict:
    """What a prediction's rows depend on: the input file as it is, the model and the settings."""
    source = str(cfg.input)
    found = {"input": source if source == "-" else str(Path(source).resolve())}
    if source != "-":
        stat = Path(source).stat()
        found.update(size=stat.st_size, mtime_ns=stat.st_mtime_ns)
    found.update({k: str(cfg[k]) for k in ("text_column", "text_pair_column", "read_kwargs",
                                           "run_dir", "ckpt_path", "backend", "precision",
                                           "threshold")})
    return found


def predict(cfg: DictConfig) -> int:
    """Predict `cfg.input` into `cfg.output` in chunks of CHUNK texts, each written (and
    recorded) as it is done, so that a stopped prediction continues with resume=true."""
    check_threshold(cfg.threshold)
    check_ranges(cfg, PREDICT_RANGES)
    check_read_kwargs(cfg.read_kwargs, "read_kwargs")
    check_backend(cfg.backend, str(cfg.precision), cfg.ckpt_path)
    precision, why = inference_precision(str(cfg.precision), cfg.backend)
    if cfg.explain and cfg.backend != "torch":
        raise ConfigError("explain=true needs gradients: use it with backend=torch")
    if cfg.explain and cfg.resume:
        raise ConfigError("explain=true writes its page when all texts are done; it cannot "
                          "resume (use resume=false)")
    path = output_path(cfg.output, cfg.explain)
    source = str(cfg.input)
    columns = input_columns(trained_pair_column(cfg.run_dir, cfg.ckpt_path, cfg.backend),
                            cfg.text_column, cfg.text_pair_column)
    read_kwargs = dict(cfg.read_kwargs or {})
    if source == "-":  # read once: checked and predicted from memory
        texts = read_texts(source, columns, read_kwargs)
        total, rows_of = len(texts), lambda: iter(texts)
    else:
        rows_of = lambda: text_rows(source, columns, read_kwargs)  # noqa: E731
        total = count_texts(rows_of(), source)
    what = identity(cfg)
    done, offset = started(path, what, bool(cfg.resume))
    model, tokenizer = load_predictor(cfg.run_dir, cfg.ckpt_path, cfg.backend)
    check_threshold_applies(cfg.threshold, model)
    precision, why = model_precision(model.hparams, precision, why, str(cfg.precision))
    if str(cfg.precision) == "auto":  # (after every check: a mistake stays one line)
        print(f"precision {precision}: {why}", file=sys.stderr)
    if done:
        print(f"continuing {path}: {done} of {total} rows were done", file=sys.stderr)
    partial, record = unfinished(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    explained, clock, rows_done = [], time.time(), done
    texts = rows_of()
    for _ in islice(texts, done):  # (skipped, not predicted)
        pass
    bar = tqdm(total=total, initial=done, unit="rows", desc="predict", disable=total <= CHUNK,
               file=sys.stderr)
    try:
        with open(partial, "r+b" if partial.exists() else "wb") as f:
            f.truncate(offset)  # a chunk written after the last record is written again
            f.seek(offset)
            while chunk := list(islice(texts, CHUNK)):
                rows = predicted_rows(model, tokenizer, chunk, cfg, precision, explained)
                f.write(encoded(rows, path.suffix.lower() == ".csv", header=f.tell() == 0))
                f.flush()
                os.fsync(f.fileno())
                rows_done += len(rows)
                with written_whole(record) as tmp:
                    tmp.write_text(json.dumps({"for": what, "rows": rows_done,
                                               "bytes": f.tell()}))
                bar.update(len(rows))
    except KeyboardInterrupt:
        bar.close()
        print(f"stopped: {rows_done} of {total} rows are in {partial}; continue with the same "
              f"command and resume=true", file=sys.stderr)
        raise
    bar.close()
    if cfg.explain:
        from bertlab.explain import write_html

        page = path.with_suffix(".html")
        write_html(page, *zip(*explained), tokenizer)
        print(f"wrote explanations to {page}", file=sys.stderr)
    if path.exists():
        raise ConfigError(f"output {path} appeared while predicting; the rows are in {partial}")
    os.replace(partial, path)
    record.unlink()
    rate = (rows_done - done) / max(time.time() - clock, 1e-9)
    print(f"wrote {rows_done} predictions to {cfg.output} ({rate:.0f} rows/s)", file=sys.stderr)
    return rows_done


def predicted_rows(model, tokenizer, texts: list[tuple], cfg: DictConfig, precision: str,
                   explained: list) -> list[dict]:
    """The result rows of `texts` ((text, pair or None) rows); with explain=true, each row's
    top tokens added and (row, token scores) kept in `explained` for the page."""
    pairs = [p for _, p in texts] if texts and texts[0][1] is not None else None
    texts = [t for t, _ in texts]
    rows, scores = scored_rows(model, tokenizer, texts, cfg.threshold, pairs=pairs,
                               batch_size=cfg.batch_size, precision=precision)
    if cfg.explain:
        from bertlab.explain import explain_texts, top_tokens

        targets = ([None] * len(texts) if not model.task.has_classes else
                   scores.argmax(-1).tolist())  # multi-label: the most likely label
        for row, token_scores in zip(rows, explain_texts(model, tokenizer, texts, targets,
                                                                       pairs=pairs)):
            row["explanation"] = top_tokens(token_scores, tokenizer)
            explained.append((row, token_scores))
    return rows
