"""Smaller, cheaper models and fewer labels (issue 15), on the tweets' default split, MiniLM-L6:

- full fine-tuning (the plain command) against LoRA r=8 and r=16 (`--lora-lr`, LoRA's usual
  ~10x rate): test accuracy and macro-F1, training seconds, trainable %, checkpoint / adapter MB;
- a 3-layer model trained directly on the labels with no teacher (the pretrained encoder's lowest
  3 layers, `+model.config_overrides.num_hidden_layers=3`: what a user without a teacher trains)
  against a 3-layer student distilled from the full run (the teacher's layers 2, 4, 6, then its
  soft targets), and, to show where the student's gain comes from, the same student start trained
  on the labels alone (distill.alpha=0): the same columns plus predict ms per batch of 32 and
  model MB;
- scarce labels: a teacher on 500 labelled tweets (seeded, stratified) against a student of the
  same size distilled from it with the rest of the training split as data.unlabeled_file.

    python benchmarks/cost.py --results benchmarks/RESULTS.md   (about 40 minutes on 2 CPU cores)
    python benchmarks/cost.py --smoke                            (the tiny model: the pipeline only)
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

from common import report, timed

ROOT = Path(__file__).resolve().parents[1]


def run(tmp: Path, name: str, overrides: list[str]) -> tuple[Path, dict]:
    folder = tmp / name
    timed([sys.executable, str(ROOT / "train.py"), "trainer.enable_progress_bar=false",
           f"output_dir={folder}", *overrides], cwd=tmp)
    return folder, json.loads((folder / "metrics.json").read_text())


def mb(path: Path) -> float:
    return path.stat().st_size / 2**20


def predict_ms(folder: Path, texts: list[str]) -> tuple[float, float]:
    """(ms per batch of 32 with predict's defaults, model MB of parameters)."""
    from transformers import AutoTokenizer

    from bertlab.models.checkpoints import find_checkpoint, load_network
    from bertlab.models.inference import inference_precision, predict_texts

    net = load_network(find_checkpoint(str(folder)))
    tok = AutoTokenizer.from_pretrained(net.hparams.model["tokenizer"])
    precision, _ = inference_precision("auto", "torch")
    predict_texts(net, tok, texts[:64], batch_size=32, precision=precision)  # warm up
    start = time.perf_counter()
    predict_texts(net, tok, texts, batch_size=32, precision=precision)
    ms = (time.perf_counter() - start) * 1000 / (len(texts) / 32)
    return ms, sum(p.numel() * p.element_size() for p in net.parameters()) / 2**20


def adapter_mb(tmp: Path, folder: Path) -> float:
    out = tmp / f"{folder.name}_adapter"
    timed([sys.executable, str(ROOT / "export.py"), f"run_dir={folder}", f"out={out}",
           "adapter_only=true"], cwd=tmp)
    return mb(out / "adapter_model.safetensors")


def split_files(tmp: Path, base: list[str], labelled: int, seed: int) -> dict:
    """The default run's split written to files: `labelled` stratified training rows, the other
    training texts unlabelled, and its validation and test rows."""
    from hydra import compose, initialize_config_dir

    from bertlab.data.datamodule import from_config

    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=[*base, f"output_dir={tmp / 'unused'}"])
    dm = from_config(cfg)
    dm.setup("fit")
    names = dm.labels

    def rows(split):
        return [(t, names[y]) for t, y in zip(dm.texts(split), dm.dataset[split]["labels"][:])]

    train = rows("train")
    rnd = random.Random(seed)
    by_label: dict[str, list] = {}
    for i, (_, y) in enumerate(train):
        by_label.setdefault(y, []).append(i)
    chosen = set()
    for y, idx in by_label.items():  # stratified: each label's share of `labelled`
        chosen.update(rnd.sample(idx, round(labelled * len(idx) / len(train))))
    files = {}
    for name, data in (("train", [train[i] for i in sorted(chosen)]), ("validation", rows("validation")),
                       ("test", rows("test"))):
        files[name] = tmp / f"{name}.csv"
        with open(files[name], "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["text", "label"])
            w.writerows(data)
    files["unlabeled"] = tmp / "unlabeled.csv"
    with open(files["unlabeled"], "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text"])
        w.writerows([[t] for i, (t, _) in enumerate(train) if i not in chosen])
    return files


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lora-lr", default="1e-3", help="LoRA's learning rate (full: the model's own)")
    p.add_argument("--labelled", type=int, default=500, help="labelled rows of the scarce-label row")
    p.add_argument("--smoke", action="store_true", help="model=tiny on 400 rows: check the pipeline")
    p.add_argument("--results", help="append the lines to this markdown file")
    args = p.parse_args()
    base = ["model=tiny", "data.max_samples=400", "max_epochs=1"] if args.smoke else []
    layers = "1" if args.smoke else "3"
    labelled = 100 if args.smoke else args.labelled
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        rows = {}
        full, m = run(tmp, "full", base)
        rows["full fine-tuning"] = (full, m)
        for r in (8, 16):
            folder, m = run(tmp, f"lora{r}", [*base, "model.peft=lora", f"model.lora.r={r}",
                                              f"lr={args.lora_lr}"])
            rows[f"LoRA r={r} (lr {args.lora_lr})"] = (folder, m)
        folder, m = run(tmp, "direct", [*base, f"++model.config_overrides.num_hidden_layers={layers}"])
        rows[f"{layers}-layer model, no teacher (the pretrained lowest {layers} layers)"] = (folder, m)
        student = [*base, f"distill.teacher={full}", f"distill.layers={layers}"]
        folder, m = run(tmp, "student_labels", [*student, "distill.alpha=0"])
        rows[f"{layers}-layer student start (the teacher's layers), labels only"] = (folder, m)
        folder, m = run(tmp, "student", student)
        rows[f"{layers}-layer student, distilled (distill's defaults)"] = (folder, m)
        files = split_files(tmp, base, labelled, seed=0)
        with open(files["test"], encoding="utf-8") as f:
            test_texts = [r["text"] for r in csv.DictReader(f)][:1024]
        data = ["data=files", f"data.train_file={files['train']}",
                f"data.validation_file={files['validation']}", f"data.test_file={files['test']}",
                "data.clean=[normalize_whitespace]"]
        teacher, m = run(tmp, "scarce_teacher", [*base, *data])
        rows[f"{labelled} labels: teacher"] = (teacher, m)
        folder, m = run(tmp, "scarce_student", [*base, *data, f"data.unlabeled_file={files['unlabeled']}",
                                                f"distill.teacher={teacher}", "distill.layers=null"])
        rows[f"{labelled} labels: student of it + the rest unlabelled"] = (folder, m)

        ref = rows["full fine-tuning"][1]
        full_ckpt = mb(full / "checkpoints" / "best.ckpt")
        report(f"- cost ({time.strftime('%Y-%m-%d')}, {'tiny smoke' if args.smoke else 'MiniLM-L6'}, "
               f"tweets default split; full-run checkpoint {full_ckpt:.1f} MB):", args.results)
        for name, (folder, m) in rows.items():
            params = m["parameters"]
            line = (f"  - {name}: test acc {m['test/acc']:.4f}, macro-F1 {m['test/f1']:.4f} "
                    f"({m['test/acc'] / ref['test/acc']:.1%} of full), train {m['train_seconds']:.0f} s, "
                    f"trainable {params['trainable_at_start'] / params['total']:.2%} of "
                    f"{params['total'] / 1e6:.1f}M")
            if name.startswith("LoRA"):
                size = adapter_mb(tmp, folder)
                line += f", adapter {size:.2f} MB ({size / full_ckpt:.1%} of the full checkpoint)"
            if name == "full fine-tuning" or f"{layers}-layer" in name:
                ms, size = predict_ms(folder, test_texts)
                line += f", predict {ms:.1f} ms per 32, model {size:.1f} MB"
            report(line, args.results)


if __name__ == "__main__":
    main()
