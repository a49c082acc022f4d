"""find_label_issues.py measured on the tweets: known noise, whether cleaning pays, and its cost.

1. Known noise: the tweets' training split (benchmarks/quality.py's seeded, stratified 90/10 split)
   with --noise of its labels flipped at random to another class (seeded; the flipped rows are
   known). Each --methods runs find_label_issues.py on it; its flagged rows are scored against the
   flips (precision, recall, F1) beside the baseline a user would try first: the rows with the
   highest loss under a model trained on all rows (the default command, then predict.py on its own
   training file), as many rows as the method flagged.
2. Does it pay: test accuracy on the clean test split, trained (default command) on the clean
   rows, on the noisy rows, without each method's flagged rows (data.exclude_rows) and with its
   suggested labels (data.relabel_rows); the share of the noise's cost that cleaning recovers.
   The same on the original tweets (no flips), as measured.
3. Cost: each method's wall time, start to exit.

    python benchmarks/label_issues.py [--methods embeddings,finetune] [--noise 0.1]
                                      [--original | --only-original] [--results RESULTS.md]

Prints one line per measurement (and appends them with --results); asserts nothing.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import report
from quality import dataset

ROOT = Path(__file__).resolve().parents[1]


def run(script: str, args: list[str], cwd: Path) -> float:
    """Seconds the command takes, start to exit (its last error line, and exit, if it fails)."""
    quiet = [] if script == "predict" else ["trainer.enable_progress_bar=false"]
    start = time.time()
    r = subprocess.run([sys.executable, str(ROOT / f"{script}.py"), *args, *quiet], cwd=cwd,
                       capture_output=True, text=True)
    if r.returncode:
        sys.exit(f"{script} failed: {(r.stderr.strip().splitlines() or [''])[-1]}")
    return time.time() - start


def rows_of(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def noisy_copy(src: Path, dst: Path, label: str, share: float, seed: int = 0) -> set[int]:
    """`src` with `share` of its labels flipped to another class; the flipped rows' positions."""
    rows = rows_of(src)
    classes = sorted({r[label] for r in rows})
    rnd = random.Random(seed)
    flips = set(rnd.sample(range(len(rows)), round(share * len(rows))))
    for i in flips:
        rows[i][label] = rnd.choice([c for c in classes if c != rows[i][label]])
    with open(dst, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return flips


def scores(flagged: set[int], truth: set[int]) -> dict:
    hit = len(flagged & truth)
    p, r = hit / max(1, len(flagged)), hit / max(1, len(truth))
    return {"flagged": len(flagged), "precision": round(p, 3), "recall": round(r, 3),
            "f1": round(2 * p * r / (p + r), 3) if p + r else 0.0}


def train(d: dict, train_file: Path, out: Path, *extra: str) -> tuple[float, float]:
    """(test accuracy, wall seconds) of the default command on `train_file`."""
    wall = run("train", ["data=files", f"data.train_file={train_file}", f"data.test_file={d['test']}",
                         f"data.text_column={d['text']}", f"data.label_column={d['label']}", *extra,
                         f"hydra.run.dir={out}"], out.parent)
    return json.loads((out / "metrics.json").read_text())["test/acc"], wall


def highest_loss(run_dir: Path, train_file: Path, d: dict, tmp: Path) -> list[int]:
    """Training rows by their loss under the run's model, highest first (the rows predict.py
    reads: every row of the file, in order)."""
    out = tmp / "train_predictions.jsonl"
    run("predict", [f"run_dir={run_dir}", f"input={train_file}", f"text_column={d['text']}",
                    f"output={out}"], tmp)
    given = [r[d["label"]] for r in rows_of(train_file)]
    preds = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(preds) == len(given), (len(preds), len(given))
    loss = [-math.log(max(p.get(f"p_{y}", 0.0), 1e-12)) for p, y in zip(preds, given)]
    return sorted(range(len(loss)), key=lambda i: -loss[i])


def find(d: dict, train_file: Path, method: str, out: Path) -> tuple[list[dict], float]:
    wall = run("find_label_issues", ["data=files", f"data.train_file={train_file}",
                                     f"data.text_column={d['text']}", f"data.label_column={d['label']}",
                                     f"method={method}", f"hydra.run.dir={out}"], out.parent)
    return rows_of(out / "label_issues.csv"), wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", default="embeddings,finetune")
    ap.add_argument("--noise", type=float, default=0.1)
    ap.add_argument("--original", action="store_true", help="also clean the original tweets")
    ap.add_argument("--only-original", action="store_true", help="the original tweets alone")
    ap.add_argument("--results")
    args = ap.parse_args()
    methods = args.methods.split(",")
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        d = dataset("tweets", tmp)
        if args.only_original:
            return original(d, methods, tmp, args.results)
        noisy = tmp / "noisy_train.csv"
        flips = noisy_copy(d["train"], noisy, d["label"], args.noise)
        acc_clean, _ = train(d, d["train"], tmp / "clean")
        acc_noisy, _ = train(d, noisy, tmp / "noisy")
        by_loss = highest_loss(tmp / "noisy", noisy, d, tmp)
        head = f"tweets, {args.noise:.0%} of {len(rows_of(noisy))} training labels flipped (seed 0)"
        report(f"- label issues, {head}: test acc trained on the clean rows {acc_clean:.4f}, on the "
               f"noisy rows {acc_noisy:.4f} (the noise costs {acc_clean - acc_noisy:+.4f})", args.results)
        for method in methods:
            found, wall = find(d, noisy, method, tmp / f"find_{method}")
            flagged = {int(r["row"]) for r in found}
            ours, base = scores(flagged, flips), scores(set(by_loss[:len(flagged)]), flips)
            csv_path = tmp / f"find_{method}" / "label_issues.csv"
            acc_without, _ = train(d, noisy, tmp / f"without_{method}", f"data.exclude_rows={csv_path}")
            acc_relabel, _ = train(d, noisy, tmp / f"relabel_{method}", f"data.relabel_rows={csv_path}")
            cost = acc_clean - acc_noisy
            recovered = lambda a: f"{(a - acc_noisy) / cost:.0%}" if cost > 0 else "n/a"  # noqa: E731
            report(f"- label issues, {head}, method={method}: {wall:.0f} s; flagged {ours['flagged']} rows, "
                   f"precision {ours['precision']}, recall {ours['recall']}, F1 {ours['f1']} (highest-loss "
                   f"rows of a model trained on all rows, as many: precision {base['precision']}, recall "
                   f"{base['recall']}, F1 {base['f1']}); test acc without them {acc_without:.4f} "
                   f"(recovers {recovered(acc_without)} of the noise's cost), relabelled "
                   f"{acc_relabel:.4f} (recovers {recovered(acc_relabel)})", args.results)
        if args.original:
            original(d, methods, tmp, args.results)


def original(d: dict, methods: list[str], tmp: Path, results: str | None) -> None:
    """The original tweets (no flips): each method's flagged rows, and test accuracy trained on
    all rows, without them and relabelled; prints the first method's label_issues.md."""
    acc, _ = train(d, d["train"], tmp / "original")
    for method in methods:
        found, wall = find(d, d["train"], method, tmp / f"orig_{method}")
        listed = tmp / f"orig_{method}" / "label_issues.csv"
        without, _ = train(d, d["train"], tmp / f"orig_without_{method}", f"data.exclude_rows={listed}")
        relabel, _ = train(d, d["train"], tmp / f"orig_relabel_{method}", f"data.relabel_rows={listed}")
        report(f"- label issues, the original tweets ({len(rows_of(d['train']))} training rows), "
               f"method={method}: {wall:.0f} s, flagged {len(found)} rows; test acc {acc:.4f} on "
               f"all rows, {without:.4f} without them, {relabel:.4f} relabelled", results)
        if method == methods[0]:
            print((tmp / f"orig_{method}" / "label_issues.md").read_text(), flush=True)


if __name__ == "__main__":
    main()
