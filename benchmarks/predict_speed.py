"""Inference speed: predict.py against transformers.pipeline("text-classification"), same model.

Trains a short MiniLM run on the first 4,000 SST-2 training rows (a few steps: speed does not
depend on how well it learned), exports it with export.py (a Hugging Face folder, and ONNX in fp32
and int8), then labels the 872 rows of ../shared/data/sst2/test.tsv repeated to 10,000 texts:
  - ours: `python predict.py run_dir=<run> input=texts.txt` (the whole command, start-up included),
    with precision=32, with the default precision=auto (bf16 on a CPU with AVX-512 BF16/AMX), and
    with backend=onnx on the fp32 and the int8 ONNX exports
  - peer: a fresh process that builds `pipeline("text-classification", model=<export>)` and
    calls it with batch_size=64 and truncation (its faster setting on these texts), also timed
    from launch.
Checks that they give the same labels, and prints one line with rows/s for each and the ratios
to the peer (targets: fp32 >= 2x; ONNX int8 >= 4x at the same label for >= 99% of texts). Asserts
nothing.

    python benchmarks/predict_speed.py [--results benchmarks/RESULTS.md]
"""
from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

from common import report, short_minilm_run, timed  # benchmarks/common.py (run from benchmarks/)

ROOT = Path(__file__).resolve().parents[1]
SST2 = ROOT.parent / "shared" / "data" / "sst2"
N = 10_000

PEER = """
import json, sys, time
import torch
from transformers import pipeline
texts = open(sys.argv[1], encoding="utf-8").read().splitlines()
pipe = pipeline("text-classification", model=sys.argv[2], device="cpu")
out = pipe(texts, batch_size=64, truncation=True, max_length=128)
with open(sys.argv[3], "w") as f:
    json.dump([o["label"] for o in out], f)
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--results", help="append the line to this markdown file")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bertlab_predict_") as tmp:
        tmp = Path(tmp)
        run_dir, export = short_minilm_run(ROOT, SST2, tmp), tmp / "export"
        timed([sys.executable, str(ROOT / "export.py"), f"run_dir={run_dir}", f"out={export}"], cwd=tmp)
        for extra in ([], ["int8=true"]):
            timed([sys.executable, str(ROOT / "export.py"), f"run_dir={run_dir}", "format=onnx", *extra],
                  cwd=tmp)
        with open(SST2 / "test.tsv", newline="", encoding="utf-8") as f:
            test = [r["sentence"] for r in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)]
        texts = (test * (N // len(test) + 1))[:N]
        (tmp / "texts.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")

        ours = {}
        for name, args in (("fp32", ["precision=32"]), ("auto", []), ("onnx", ["backend=onnx"]),
                           ("int8", ["backend=onnx", f"run_dir={run_dir / 'onnx_int8'}"])):
            seconds = timed([sys.executable, str(ROOT / "predict.py"), f"run_dir={run_dir}",
                             f"input={tmp / 'texts.txt'}", f"output={tmp / name}.jsonl", *args], cwd=tmp)
            ours[name] = (seconds, [json.loads(line)["label"] for line in open(tmp / f"{name}.jsonl")])
        peer_s = timed([sys.executable, "-c", PEER, str(tmp / "texts.txt"), str(export),
                        str(tmp / "peer.json")], cwd=tmp)
        peer = json.load(open(tmp / "peer.json"))

    def row(name: str, title: str, target: str) -> str:
        seconds, labels = ours[name]
        same = sum(o == p for o, p in zip(labels, peer)) / N
        return (f"{title} {seconds:.1f} s = {N / seconds:.0f} rows/s, ratio {peer_s / seconds:.2f}"
                f"{target}, same label for {same:.2%}")

    line = (f"- {datetime.date.today()} {platform.machine()} {os.cpu_count()} cores | predict "
            f"{N} texts (SST-2 test x{N / len(test):.1f}), MiniLM, whole commands | peer "
            f"pipeline(batch_size=64) {peer_s:.1f} s = {N / peer_s:.0f} rows/s | ours: "
            + " | ".join([row("fp32", "predict.py precision=32", " (target >= 2)"),
                          row("auto", "default (precision=auto)", ""),
                          row("onnx", "backend=onnx fp32", ""),
                          row("int8", "backend=onnx int8", " (target >= 4, same label >= 99%)")]))
    report(line, a.results)


if __name__ == "__main__":
    main()
