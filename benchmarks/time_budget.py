"""budget.time against the wall time it promises, and what it reaches, beside the default command
and the Hugging Face Trainer's full run (issue 39).

For each data set (quality.py's rows: the tweets, sst2-4000, ...) and each budget (1, 2 and 5
minutes): `python train.py data=files ... budget.time=<budget>` timed from launch to exit, its
test metric and its steps, then the default command (no budget) and the peer at --hf-defaults on
the same files. Target: the wall time within 5% of the budget and never over by more than 10 s
(a run that early stopping or the data's own budget ends sooner is not held to the 5%).
Prints one line per data set (and appends it with --results); asserts nothing.

    python benchmarks/time_budget.py [--rows tweets,sst2-4000] [--budgets 1m,2m,5m] [--no-peer]
                                     [--no-default] [--results RESULTS.md]
"""
from __future__ import annotations

import argparse
import datetime
import json
import platform
import tempfile
from pathlib import Path

from common import report  # benchmarks/common.py (scripts run from benchmarks/)
from quality import dataset, ours, peer

SECONDS = {"s": 1, "m": 60, "h": 3600}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", default="tweets,sst2-4000")
    ap.add_argument("--budgets", default="1m,2m,5m")
    ap.add_argument("--no-peer", action="store_true", help="leave out the peer's full run")
    ap.add_argument("--no-default", action="store_true", help="leave out the default command")
    ap.add_argument("--results", help="append each line to this markdown file")
    a = ap.parse_args()
    for name in a.rows.split(","):
        with tempfile.TemporaryDirectory(prefix="bertlab_time_") as tmp:
            d = dataset(name, Path(tmp))
            parts = []
            for budget in a.budgets.split(","):
                seconds = float(budget[:-1]) * SECONDS[budget[-1]]
                run_dir = Path(tmp) / f"ours_{budget}"
                us = ours({**d, "ours": [*d["ours"], f"budget.time={budget}"]}, run_dir, 0)
                recorded = json.loads((run_dir / "metrics.json").read_text())
                budgeted, plans = recorded["budget"], recorded["budget"]["time"]["plans"]
                over = us["wall_s"] - seconds
                sooner = recorded["stopped_by"] != "budget.time"  # (early stopping, the data's budget)
                ok = over <= 10 and (abs(over) <= 0.05 * seconds or sooner and over < 0)
                parts.append(f"budget.time={budget}: {us['wall_s']} s ({over:+.1f} s, "
                             f"{'within' if ok else 'OUTSIDE'} the target), {us['steps']} steps "
                             f"(planned {plans[-1]['steps'] if plans else '-'}; the data's budget "
                             f"{budgeted['max_steps']}; ended by {recorded['stopped_by']}), "
                             f"{us['metrics'][0]:.4f}")
                print(parts[-1], flush=True)  # (a long row: each part as it comes)
            if not a.no_default:
                default = ours(d, Path(tmp) / "ours_default", 0)
                parts.append(f"default command: {default['wall_s']} s, {default['steps']} steps, "
                             f"{default['metrics'][0]:.4f}")
            if not a.no_peer:
                them = peer(d, 0)
                parts.append(f"peer --hf-defaults: {them['wall_s']} s, {them['metrics'][0]:.4f}")
        metric = "Pearson" if d["task"] == "regression" else "accuracy"
        report(f"- {datetime.date.today()} {platform.machine()} time_budget {name} (test {metric}; "
               f"wall time launch to exit) | " + " | ".join(parts), a.results)


if __name__ == "__main__":
    main()
