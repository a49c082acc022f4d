"""predict(cfg): label new texts with a trained run; needs nothing but the run folder."""
from __future__ import annotations

import csv
import io
import json
import os
import sys
import time
from itertools import islice
from pathlib import Path

from omegaconf import DictConfig
from tqdm import tqdm

from bertlab.cli.checks import check_ranges, check_read_kwargs
from bertlab.use.checks import PREDICT_RANGES
from bertlab.data.inputs import count_texts, read_texts, text_rows
from bertlab.errors import ConfigError
from bertlab.files import written_whole
from bertlab.models.inference import (check_backend, check_threshold, check_threshold_applies,
                               inference_precision, input_columns, load_predictor, model_precision,
                               scored_rows, trained_columns)

CHUNK = 2048  # texts read, predicted and written together: memory stays flat on any input size


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
    precision, why = check_settings(cfg)
    path = output_path(cfg.output, cfg.explain)
    source = str(cfg.input)
    columns = input_columns(*trained_columns(cfg.run_dir, cfg.ckpt_path, cfg.backend),
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
    check_threshold_applies(cfg.threshold, model.task)
    precision, why = model_precision(model.hparams, precision, why, str(cfg.precision))
    if str(cfg.precision) == "auto":  # (after every check: a mistake stays one line)
        print(f"precision {precision}: {why}", file=sys.stderr)
    if done:
        print(f"continuing {path}: {done} of {total} rows were done", file=sys.stderr)
    partial, record = unfinished(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    explained, clock = [], time.time()
    texts = rows_of()
    for _ in islice(texts, done):  # (skipped, not predicted)
        pass
    predict_chunk = lambda chunk: predicted_rows(  # noqa: E731
        model, tokenizer, chunk, cfg, precision, explained)
    rows_done = write_chunks(texts, predict_chunk, path, what, (done, offset, total))
    if cfg.explain:
        from bertlab.use.explain import write_html

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


def check_settings(cfg: DictConfig) -> tuple[str, str]:
    """predict.py's own keys, before anything is read: (precision, why) for the backend."""
    check_threshold(cfg.threshold)
    check_ranges(cfg, PREDICT_RANGES)
    check_read_kwargs(cfg.read_kwargs, "read_kwargs")
    check_backend(cfg.backend, str(cfg.precision), cfg.ckpt_path)
    if cfg.explain and cfg.backend != "torch":
        raise ConfigError("explain=true needs gradients: use it with backend=torch")
    if cfg.explain and cfg.resume:
        raise ConfigError("explain=true writes its page when all texts are done; it cannot "
                          "resume (use resume=false)")
    return inference_precision(str(cfg.precision), cfg.backend)


def write_chunks(texts, predict_chunk, path: Path, what: dict, progress: tuple[int, int, int]) -> int:
    """Predict and write `texts` in chunks of CHUNK into <output>.partial, each chunk on disk and
    recorded before the next; `progress`: (rows done, their bytes, rows in all). Returns the rows
    done; Ctrl-C says how far it got and how to continue."""
    rows_done, offset, total = progress
    partial, record = unfinished(path)
    bar = tqdm(total=total, initial=rows_done, unit="rows", desc="predict", disable=total <= CHUNK,
               file=sys.stderr)
    try:
        with open(partial, "r+b" if partial.exists() else "wb") as f:
            f.truncate(offset)  # a chunk written after the last record is written again
            f.seek(offset)
            while chunk := list(islice(texts, CHUNK)):
                rows = predict_chunk(chunk)
                f.write(encoded(rows, path.suffix.lower() == ".csv", header=f.tell() == 0))
                f.flush()
                os.fsync(f.fileno())
                rows_done += len(rows)
                with written_whole(record) as tmp:
                    tmp.write_text(json.dumps({"for": what, "rows": rows_done, "bytes": f.tell()}))
                bar.update(len(rows))
    except KeyboardInterrupt:
        print(f"stopped: {rows_done} of {total} rows are in {partial}; continue with the same "
              f"command and resume=true", file=sys.stderr)
        raise
    finally:
        bar.close()
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
        from bertlab.use.explain import explain_texts, top_tokens

        targets = ([None] * len(texts) if not model.task.has_classes else
                   scores.argmax(-1).tolist())  # multi-label: the most likely label
        for row, token_scores in zip(rows, explain_texts(model, tokenizer, texts, targets,
                                                                       pairs=pairs)):
            row["explanation"] = top_tokens(token_scores, tokenizer)
            explained.append((row, token_scores))
    return rows
