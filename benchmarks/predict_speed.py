"""Inference speed: predict.py against transformers.pipeline("text-classification"), same model.

Trains a short MiniLM run on the first 4,000 SST-2 training rows (a few steps: speed does not
depend on how well it learned), exports it with export.py, then labels the 872 rows of
../shared/data/sst2/test.tsv repeated to 10,000 texts:
  - ours: `python predict.py run_dir=<run> input=texts.txt` (the whole command, start-up included),
    in fp32 (the default) and with precision=bf16
  - peer: a fresh process that builds `pipeline("text-classification", model=<export>)` and
    calls it with batch_size=64 and truncation (its faster setting on these texts), also timed
    from launch.
Checks that both give the same labels, and prints one line with rows/s for both and the ratio
(ours / peer). Asserts nothing.

    python benchmarks/predict_speed.py [--results benchmarks/RESULTS.md]
"""
from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import report  # benchmarks/common.py (scripts run from benchmarks/)

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


def run(cmd: list[str], **kw) -> float:
    start = time.time()
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode:
        sys.exit(f"{' '.join(cmd[:2])} failed: {(r.stderr.strip().splitlines() or [''])[-1]}")
    return time.time() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--results", help="append the line to this markdown file")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bertlab_predict_") as tmp:
        tmp = Path(tmp)
        lines = (SST2 / "train.tsv").read_text(encoding="utf-8").splitlines(keepends=True)
        (tmp / "train.tsv").write_text("".join(lines[:4001]), encoding="utf-8")
        run_dir, export = tmp / "run", tmp / "export"
        run([sys.executable, str(ROOT / "train.py"), "data=files", f"data.train_file={tmp / 'train.tsv'}",
             f"data.validation_file={SST2 / 'test.tsv'}", "data.test_size=0",
             "data.text_column=sentence", "data.read_kwargs={quoting: 3}", "data.clean=[]",
             "trainer.max_steps=20", "trainer.enable_progress_bar=false",
             f"hydra.run.dir={run_dir}"], cwd=tmp)
        run([sys.executable, str(ROOT / "export.py"), f"run_dir={run_dir}", f"out={export}"], cwd=tmp)
        with open(SST2 / "test.tsv", newline="", encoding="utf-8") as f:
            test = [r["sentence"] for r in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)]
        texts = (test * (N // len(test) + 1))[:N]
        (tmp / "texts.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")

        ours_s, bf16_s = (run([sys.executable, str(ROOT / "predict.py"), f"run_dir={run_dir}",
                               f"input={tmp / 'texts.txt'}", f"output={tmp / name}.jsonl",
                               f"precision={precision}"], cwd=tmp)
                          for name, precision in (("ours", "32"), ("bf16", "bf16")))
        peer_s = run([sys.executable, "-c", PEER, str(tmp / "texts.txt"), str(export),
                      str(tmp / "peer.json")], cwd=tmp)
        ours = [json.loads(line)["label"] for line in open(tmp / "ours.jsonl")]
        bf16 = [json.loads(line)["label"] for line in open(tmp / "bf16.jsonl")]
        peer = json.load(open(tmp / "peer.json"))
    same = sum(o == p for o, p in zip(ours, peer)) / N
    same_bf16 = sum(o == p for o, p in zip(bf16, peer)) / N
    line = (f"- {datetime.date.today()} {platform.machine()} {os.cpu_count()} cores | predict "
            f"{N} texts (SST-2 test x{N / len(test):.1f}), MiniLM, fp32, whole commands: ours "
            f"predict.py {ours_s:.1f} s = {N / ours_s:.0f} rows/s | peer pipeline(batch_size=64) "
            f"{peer_s:.1f} s = {N / peer_s:.0f} rows/s | ratio ours/peer {peer_s / ours_s:.2f} "
            f"(target >= 2) | same label for {same:.2%} of texts | ours precision=bf16 "
            f"{bf16_s:.1f} s = {N / bf16_s:.0f} rows/s, ratio {peer_s / bf16_s:.2f}, same label "
            f"for {same_bf16:.2%}")
    report(line, a.results)


if __name__ == "__main__":
    main()
