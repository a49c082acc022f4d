"""Start-up time: from `python train.py` to the first training step, with a warm tokenization cache.

Runs the default training command (MiniLM on the tweets) twice with `trainer.max_steps=1`: the first
run fills the cache if it is cold, the second is the one measured. The first step's time comes from
the "training starts" line of the run's train.log (millisecond timestamps), against the moment the
process was launched. Also times `python train.py --help` and a config error (`lr=-1`), which
should answer without importing torch. Prints one line per measurement; asserts nothing.

    python benchmarks/startup.py [--results benchmarks/RESULTS.md]
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import report  # benchmarks/common.py (scripts run from benchmarks/)

ROOT = Path(__file__).resolve().parents[1]
STAMP = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\]")


def first_step_seconds(scratch: Path, name: str) -> tuple[float, float]:
    """(seconds from launch to the first training step, seconds for the whole command)."""
    run = scratch / name
    launched = time.time()
    r = subprocess.run([sys.executable, str(ROOT / "train.py"), "trainer.max_steps=1",
                        "trainer.num_sanity_val_steps=0", "+trainer.limit_val_batches=0",
                        "~callbacks.early_stopping", "~callbacks.model_checkpoint",
                        f"hydra.run.dir={run}"], capture_output=True, text=True)
    total = time.time() - launched
    if r.returncode:
        sys.exit(f"train.py failed: {r.stderr.strip().splitlines()[-1]}")
    for line in (run / "train.log").read_text().splitlines():
        if "training starts" in line:
            when = datetime.datetime.strptime(STAMP.match(line).group(1), "%Y-%m-%d %H:%M:%S,%f")
            return when.timestamp() - launched, total
    sys.exit(f"no 'training starts' line in {run / 'train.log'}")


def command_seconds(*args: str) -> float:
    start = time.time()
    subprocess.run([sys.executable, str(ROOT / "train.py"), *args], capture_output=True)
    return time.time() - start


def torch_imported(*args: str) -> bool:
    code = ("import sys, runpy; sys.argv = [{!r}, *{!r}]\n"
            "try:\n    runpy.run_path({!r}, run_name='__main__')\n"
            "except SystemExit:\n    pass\n"
            "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH')").format(
        str(ROOT / "train.py"), list(args), str(ROOT / "train.py"))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout
    return "NO-TORCH" not in out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--results", help="append the line to this markdown file")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bertlab_startup_") as tmp:
        scratch = Path(tmp)
        os.chdir(scratch)
        first_step_seconds(scratch, "warm-up")  # fills the tokenization cache if it is cold
        to_step, total = first_step_seconds(scratch, "measured")
        help_s, error_s = command_seconds("--help"), command_seconds("lr=-1")
        help_torch, error_torch = torch_imported("--help"), torch_imported("lr=-1")
    line = (f"- {datetime.date.today()} {platform.machine()} {os.cpu_count()} cores | startup: "
            f"first training step {to_step:.1f} s after `python train.py` (warm cache; target < 10 s;"
            f" whole 1-step command {total:.1f} s) | `--help` {help_s:.1f} s (torch imported: "
            f"{help_torch}) | config error `lr=-1` {error_s:.1f} s (torch imported: {error_torch})")
    report(line, a.results)


if __name__ == "__main__":
    main()
