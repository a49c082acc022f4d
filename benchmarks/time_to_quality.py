"""Time to quality (MLPerf style): training seconds until accuracy on SST-2's dev set first
reaches a target, ours with defaults against the Hugging Face Trainer at its best informed settings.

The work: all of ../shared/data/sst2/train.tsv, scored on test.tsv (the GLUE dev set, 872 rows)
every N optimizer steps, counting training time only (evaluation excluded on both sides). Ours:
`python train.py data=files ...` with no training flag; only the validation file (test.tsv, so
that the curve is measured on the same rows as the peer's) and how often to validate are set,
which the budget's schedule does not depend on; early stopping is off, as the curve is the
measure (it could only end the run sooner). The peer: ../shared/bench/hf_trainer_peer.py
--eval-every N with `--pad grouped --bf16` at lr 5e-5 and 1e-4, and `--pad grouped` fp32 at 5e-5
(one epoch, batch 32). Prints one line: each side's first time at or above the target (or its
best accuracy if never), and the ratio of the peer's best time to ours. Asserts nothing.

    python benchmarks/time_to_quality.py [--target 0.88] [--every 100] [--peers "grouped bf16 lr 5e-5"]
        [--results RESULTS.md]
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

from common import report  # benchmarks/common.py (scripts run from benchmarks/)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SST2 = ROOT.parent / "shared" / "data" / "sst2"
PEER = ROOT.parent / "shared" / "bench" / "hf_trainer_peer.py"
PEERS = {"grouped bf16 lr 5e-5": ["--pad", "grouped", "--bf16", "--lr", "5e-5"],
         "grouped bf16 lr 1e-4": ["--pad", "grouped", "--bf16", "--lr", "1e-4"],
         "grouped fp32 lr 5e-5": ["--pad", "grouped", "--lr", "5e-5"]}


def first_at(curve: list[dict], key: str, target: float) -> float | None:
    return next((p["train_s"] for p in curve if p.get(key, 0) >= target), None)


def ours(every: int, tmp: Path) -> list[dict]:
    path = tmp / "curve.jsonl"
    cmd = [sys.executable, str(ROOT / "train.py"), "data=files",
           f"data.train_file={SST2 / 'train.tsv'}", f"data.validation_file={SST2 / 'test.tsv'}",
           "data.test_size=0", "data.text_column=sentence",
           f"trainer.val_check_interval={every}", "trainer.enable_progress_bar=false",
           "~callbacks.early_stopping",
           "+callbacks.curve._target_=curve.Curve", f"+callbacks.curve.path={path}",
           f"hydra.run.dir={tmp / 'ours'}"]
    env = {**os.environ, "PYTHONPATH": f"{HERE}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode:
        sys.exit(f"our run failed: {r.stderr.strip().splitlines()[-1]}")
    return [json.loads(line) for line in path.read_text().splitlines()]


def peer(args: list[str], every: int) -> list[dict]:
    r = subprocess.run([sys.executable, str(PEER), "--train", str(SST2 / "train.tsv"), "--eval",
                        str(SST2 / "test.tsv"), "--limit", "0", "--eval-every", str(every), *args],
                       capture_output=True, text=True)
    if r.returncode:
        sys.exit(f"the peer failed: {r.stderr.strip().splitlines()[-1]}")
    return json.loads(r.stdout.strip().splitlines()[-1])["curve"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--target", type=float, default=0.88)
    ap.add_argument("--every", type=int, default=100, help="steps between evaluations")
    ap.add_argument("--peers", default=",".join(PEERS),
                    help="which peer settings to run, comma-separated (default: all three)")
    ap.add_argument("--results", help="append the line to this markdown file")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bertlab_ttq_") as tmp:
        us = ours(a.every, Path(tmp))
    ours_s = first_at(us, "val/acc", a.target)
    parts, best = [], None
    for name in a.peers.split(","):
        args = PEERS[name]
        curve = peer(args, a.every)
        t = first_at(curve, "accuracy", a.target)
        best = t if t is not None and (best is None or t < best) else best
        parts.append(f"{name}: {t if t is not None else 'never'} s (best acc "
                     f"{max(p.get('accuracy', 0) for p in curve):.4f})")
    ratio = f"{best / ours_s:.2f}" if best and ours_s else "n/a"
    line = (f"- {datetime.date.today()} {platform.machine()} time to {a.target} acc on SST-2 dev "
            f"(training seconds, eval every {a.every} steps) | ours, defaults: "
            f"{ours_s if ours_s is not None else 'never'} s (best acc "
            f"{max(p.get('val/acc', 0) for p in us):.4f}, {us[-1]['step']} steps) | peer "
            + "; ".join(parts) + f" | peer's best time / ours {ratio}")
    report(line, a.results)


if __name__ == "__main__":
    main()
