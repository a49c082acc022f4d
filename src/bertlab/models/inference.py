"""A trained run's answers to texts: its predictor loaded (checkpoint or ONNX), the texts
cleaned and tokenized as training did, and scores turned into result rows. predict.py, serve.py,
the distillation teacher and the benchmarks all answer through here."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from tqdm import tqdm
from transformers import AutoTokenizer, DataCollatorWithPadding

from bertlab.models.checkpoints import find_checkpoint, load_network
from bertlab.data.clean import cleaner
from bertlab.data.tokens import encode_texts
from bertlab.errors import ConfigError
from bertlab.hub import from_pretrained
from bertlab.task import task_of


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


def trained_columns(run_dir, ckpt_path, backend: str = "torch") -> tuple[str | None, str | None]:
    """What the model reads, from its folders alone (no model loaded): (its run's text column,
    its second-text column: '' for single texts), None where no folder says (a checkpoint file
    on its own)."""
    from bertlab.cli.runs import trained_pair_column as pair_of, trained_text_column as text_of

    if backend == "onnx":
        from bertlab.models.onnx_network import onnx_folder

        if not run_dir:
            raise ConfigError("backend=onnx needs run_dir=<the run, or its ONNX export folder>")
        meta = json.loads((onnx_folder(run_dir) / "bertlab.json").read_text())
        run = Path(meta["checkpoint"]).parent.parent  # (an export made before bertlab.json said)
        pair = meta["text_pair_column"] or "" if "text_pair_column" in meta else \
            (pair_of(run) if meta.get("pair") else "")
        return meta.get("text_column") or text_of(run), pair
    if run_dir and pair_of(run_dir) is not None:
        return text_of(run_dir), pair_of(run_dir)
    for folder in find_checkpoint(run_dir, ckpt_path).resolve().parents[1:4]:  # the run it is in
        if pair_of(folder) is not None:  # (<run>/checkpoints/, <run>/shrink/<time>/)
            return text_of(folder), pair_of(folder)
    return None, None


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


def input_columns(trained_text: str | None, trained: str | None, text_column: str | None,
                  text_pair_column: str | None) -> list[str]:
    """The input's columns: the text (the run's own column unless `text_column` names another;
    `text` where no folder says), and for a model trained on pairs the second text (likewise).
    `trained_text`, `trained`: trained_columns'."""
    text_column = text_column or trained_text or "text"
    if text_pair_column and trained == "":
        raise ConfigError(f"text_pair_column={text_pair_column} is for a run trained on text pairs; "
                          f"this one read single texts: leave text_pair_column out")
    if trained and not text_pair_column:
        return [text_column, trained]
    return [text_column, text_pair_column] if text_pair_column else [text_column]


def check_threshold_applies(threshold, task) -> None:
    """threshold= decides multi-label predictions; elsewhere it would be ignored without a word."""
    task = task_of(task)
    if threshold is not None and not task.multi_hot:
        raise ConfigError(f"threshold={threshold} is for multi-label runs; this run is "
                          f"{task.name} (its label is the most probable class): leave "
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
        enc = encode_texts(tokenizer, texts, pairs, hp.max_length)[0]
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
