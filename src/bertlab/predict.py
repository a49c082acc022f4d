"""predict(cfg): label new texts with a trained run; needs nothing but the run folder."""
from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

import torch
from omegaconf import DictConfig
from tqdm import tqdm
from transformers import AutoTokenizer, DataCollatorWithPadding

from bertlab.data.clean import cleaner
from bertlab.errors import ConfigError, DataError
from bertlab.files import write_csv, written_whole
from bertlab.hub import from_pretrained
from bertlab.checkpoints import find_checkpoint, load_network

TABLES = {".csv": ",", ".tsv": "\t"}


def read_texts(source: str, text_column: str) -> list[str]:
    """Texts from a .txt file (one per line), a csv/tsv/jsonl/json table, or stdin (`-`)."""
    if source == "-":
        name, raw, suffix = "stdin", sys.stdin.buffer.read().decode("utf-8", errors="replace"), ".txt"
    else:
        path = Path(source)
        if not path.is_file():
            raise ConfigError(f"input={source} " + ("is a folder; give a file (or - for stdin)"
                                                    if path.is_dir() else "does not exist"))
        name, suffix = source, path.suffix.lower()
        with open(path, encoding="utf-8", errors="replace", newline="") as f:  # a lone \r is no line end
            raw = f.read()
    if suffix in TABLES:
        rows = list(csv.DictReader(io.StringIO(raw), delimiter=TABLES[suffix]))
    elif suffix in (".jsonl", ".json"):
        try:
            rows = (json.loads(raw) if suffix == ".json" else
                    [json.loads(line) for line in raw.splitlines() if line.strip()])
        except json.JSONDecodeError as e:
            raise DataError(f"input={name} is not valid {suffix[1:]}: {e}") from e
    else:
        rows = None
    if rows is None:
        # lines end at \n (or \r\n) only: str.splitlines would also cut a text at \x1c, \x85 or
        # \u2028, which real texts (tweets) hold, and shift every later prediction
        texts = [line.removesuffix("\r") for line in raw.split("\n")]
        while texts and not texts[-1].strip():  # blank lines at the end are no texts
            texts.pop()
    else:
        if rows and text_column not in rows[0]:
            raise DataError(f"text_column={text_column!r} is not a column of {name}; its columns "
                            f"are: {', '.join(rows[0])}")
        texts = [str(r.get(text_column) or "") for r in rows]
    if not texts:
        raise DataError(f"input={name} holds no texts")
    blank = [i + 1 for i, t in enumerate(texts) if not t.strip()]
    if blank:
        raise DataError(f"input={name} has {len(blank)} blank text(s), the first at row {blank[0]}"
                        f"; remove them (every row gets a prediction)")
    return texts


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


def load_predictor(run_dir, ckpt_path, backend: str = "torch"):
    """(model, tokenizer): the checkpoint's network (torch) or the run's ONNX export."""
    if backend == "onnx":
        from bertlab.models.onnx_network import OnnxNetwork, onnx_folder

        if not run_dir:
            raise ConfigError("backend=onnx needs run_dir=<the run, or its ONNX export folder>")
        model = OnnxNetwork(onnx_folder(run_dir))
    else:
        model = load_network(find_checkpoint(run_dir, ckpt_path))
    return model, from_pretrained(AutoTokenizer, model.hparams.model["tokenizer"],
                                  what="model.tokenizer")


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


def output_path(output: str, explain: bool = False) -> Path:
    """The output file, checked before any work: a known suffix, and nothing there yet."""
    path = Path(output)
    if path.suffix.lower() not in (".csv", ".jsonl"):
        raise ConfigError(f"output={output} must end in .csv or .jsonl")
    for p in (path, path.with_suffix(".html")) if explain else (path,):
        if p.exists():
            raise ConfigError(f"output {p} exists already; choose a new name")
    return path


def json_line(row: dict) -> str:
    """One JSON line; the three line breaks json.dumps leaves raw (\x85, \u2028, \u2029) escaped,
    so that a reader splitting on any line break (str.splitlines) still gets one row per line."""
    text = json.dumps(row, ensure_ascii=False)
    for char in "\x85\u2028\u2029":
        text = text.replace(char, f"\\u{ord(char):04x}")
    return text + "\n"


def write_rows(rows: list[dict], output: str) -> None:
    """csv or jsonl by suffix; written to a temporary name first, so no half file is left."""
    path = output_path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    with written_whole(path) as tmp:
        if path.suffix.lower() == ".jsonl":
            tmp.write_text("".join(json_line(r) for r in rows), encoding="utf-8")
        else:
            write_csv(tmp, [{k: "|".join(v) if isinstance(v, list) else v for k, v in r.items()}
                            for r in rows])


def predict(cfg: DictConfig) -> list[dict]:
    check_threshold(cfg.threshold)
    if not isinstance(cfg.batch_size, int) or cfg.batch_size <= 0:
        raise ConfigError(f"batch_size={cfg.batch_size!r} is not valid; use a positive integer")
    check_backend(cfg.backend, str(cfg.precision), cfg.ckpt_path)
    precision, why = inference_precision(str(cfg.precision), cfg.backend)
    if cfg.explain and cfg.backend != "torch":
        raise ConfigError("explain=true needs gradients: use it with backend=torch")
    output_path(cfg.output, cfg.explain)
    model, tokenizer = load_predictor(cfg.run_dir, cfg.ckpt_path, cfg.backend)
    precision, why = model_precision(model.hparams, precision, why, str(cfg.precision))
    texts = read_texts(str(cfg.input), cfg.text_column)
    if str(cfg.precision) == "auto":  # (after every check: a mistake stays one line)
        print(f"precision {precision}: {why}", file=sys.stderr)
    windows = [] if model.hparams.get("windows") else None  # each text's count, in its row
    scores = predict_texts(model, tokenizer, texts, cfg.batch_size, progress=len(texts) > 1000,
                           precision=precision, windows=windows)
    rows = result_rows(model, texts, scores, cfg.threshold, windows)
    if cfg.explain:
        from bertlab.explain import explain_texts, top_tokens, write_html

        targets = ([None] * len(texts) if not model.task.has_classes else
                   scores.argmax(-1).tolist())  # multi-label: the most likely label
        explanations = explain_texts(model, tokenizer, texts, targets)
        for row, scores_ in zip(rows, explanations):
            row["explanation"] = top_tokens(scores_, tokenizer)
        page = Path(cfg.output).with_suffix(".html")
        write_html(page, rows, explanations, tokenizer)
        print(f"wrote explanations to {page}", file=sys.stderr)
    write_rows(rows, cfg.output)
    print(f"wrote {len(rows)} predictions to {cfg.output}", file=sys.stderr)
    return rows
