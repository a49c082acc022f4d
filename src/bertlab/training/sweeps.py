"""The end of a multirun (a Hydra callback, conf/hydra/default.yaml): the sweep's summary files,
its record in the trackers, one line per failed job and a non-zero exit if any failed."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from hydra.experimental.callback import Callback


class SweepSummary(Callback):
    """At the end of a multirun: the summary files (bertlab.analysis.report), one line per failed job,
    and a non-zero exit if any failed."""

    def on_multirun_end(self, config, **kwargs) -> None:
        from bertlab.analysis.report import summarize

        sweep = Path(config.hydra.sweep.dir)
        summarize(sweep)
        print(f"sweep summary: {sweep / 'summary.md'} (.csv, .png)", file=sys.stderr)
        if config.get("logger"):
            from bertlab.training.loggers import record_sweep

            record_sweep(config.logger, sweep)
        failed = []
        for job in sorted(sweep.glob("*/metrics.json")):
            try:
                status = json.loads(job.read_text())
            except ValueError:  # (summarize has said so)
                status = {"status": "failed", "error": "its metrics.json cannot be read"}
            if status.get("status") == "failed":
                failed.append(f"job {job.parent.name}: {status.get('error')}")
        total = len(list(sweep.glob("*/metrics.json")))
        if failed:
            print(f"error: {len(failed)} of {total} jobs failed ({sweep}):", file=sys.stderr)
            for line in failed:
                print(f"  {line}", file=sys.stderr)
            sys.exit(1)
