"""The fine-tuning recipe, one switch at a time: writes benchmarks/recipe.md.

MiniLM-L6 on the offline tweets corpus, the same seed and the same sample for every row.
Each row is one `python train.py` run (and one `python shrink.py` for int8), run one after the
other in a scratch folder; nothing is asserted, the table is the result.

    python benchmarks/recipe.py [--samples 6000] [--epochs 2] [--out benchmarks/recipe.md]
"""
from __future__ import annotations

import argparse
import datetime
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROWS = [  # (name, overrides)
    ("default recipe (linear warmup 10%, AdamW)", []),
    ("no warmup", ["scheduler.warmup=0"]),
    ("cosine schedule", ["scheduler=cosine"]),
    ("step decay (x0.5 per epoch)", ["scheduler=step"]),
    ("layer-wise lr decay 0.9", ["layer_decay=0.9"]),
    ("frozen encoder (linear probe, lr 1e-3)", ["model.freeze_encoder=true", "lr=1e-3"]),
    ("balanced class weights", ["loss=cross_entropy", "class_weights=balanced"]),
    ("50% pruning (epoch 1)", ["callbacks=pruning", "callbacks.pruning.sparsity=0.5"]),
]


def train(name: str, overrides: list[str], base: list[str], scratch: Path) -> dict:
    run_dir = scratch / name.split(" (")[0].replace(" ", "_").replace("%", "pct")
    start = time.time()
    r = subprocess.run([sys.executable, str(ROOT / "train.py"), *base, *overrides,
                        f"hydra.run.dir={run_dir}"], capture_output=True, text=True)
    if r.returncode:
        return {"error": r.stderr.strip().splitlines()[-1]}
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {**metrics, "minutes": (time.time() - start) / 60, "run_dir": run_dir}


def shrink(run_dir: Path) -> dict:
    r = subprocess.run([sys.executable, str(ROOT / "shrink.py"), f"run_dir={run_dir}",
                        "int8=true"], capture_output=True, text=True)
    if r.returncode:
        return {"error": r.stderr.strip().splitlines()[-1]}
    (out,) = (run_dir / "shrink").iterdir()
    return json.loads((out / "shrink.json").read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--samples", type=int, default=6000, help="tweets sampled (seeded)")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "recipe.md"))
    a = ap.parse_args()
    base = ["model=minilm", "data=tweets", f"data.max_samples={a.samples}",
            f"max_epochs={a.epochs}", "seed=0", "~callbacks.early_stopping"]
    lines = [f"# The recipe, one switch at a time ({datetime.date.today()}, "
             f"{platform.machine()}, {platform.processor() or 'cpu'}, 2 cores)", "",
             f"`python benchmarks/recipe.py --samples {a.samples} --epochs {a.epochs}`: MiniLM-L6, "
             f"tweets sample of {a.samples} rows (80/10/10 split), {a.epochs} epochs, seed 0, "
             f"batch 32, lr 1e-4 unless the row says otherwise. Validation and test metrics of "
             f"the best checkpoint; minutes are the whole run (load, train, validate, test).", "",
             "| setting | overrides | val/acc | val/f1 | test/acc | minutes |",
             "| --- | --- | --- | --- | --- | --- |"]
    with tempfile.TemporaryDirectory(prefix="bertlab_recipe_") as tmp:
        default_run = None
        for name, overrides in ROWS:
            m = train(name, overrides, base, Path(tmp))
            print(name, {k: v for k, v in m.items() if "/" in k or k == "minutes"}, flush=True)
            if "error" in m:
                lines.append(f"| {name} | `{' '.join(overrides)}` | {m['error']} | | | |")
                continue
            default_run = default_run or m["run_dir"]
            extra = ""
            if "pruning" in m:
                p = m["pruning"]
                extra = (f" (sparsity {p['sparsity']:.2f}; val/loss {p['before']['val/loss']:.3f}"
                         f" before, {p['after']['val/loss']:.3f} after)")
            lines.append(f"| {name}{extra} | `{' '.join(overrides) or '-'}` | "
                         f"{m['val/acc']:.4f} | {m['val/f1']:.4f} | {m['test/acc']:.4f} | "
                         f"{m['minutes']:.1f} |")
        if default_run:
            s = shrink(default_run)
            if "error" not in s:
                b, q = s["before"], s["after"]
                lines += ["", "int8 dynamic quantisation of the default run (`python shrink.py "
                          "int8=true`):", "", "| model | size MB | parameters | ms per batch of "
                          "32 | val/acc |", "| --- | --- | --- | --- | --- |",
                          f"| fp32 | {b['size_mb']} | {b['parameters']} | {b['latency_ms']} | "
                          f"{b.get('val/acc', b.get('val/loss'))} |",
                          f"| int8 | {q['size_mb']} | {q['parameters']} | {q['latency_ms']} | "
                          f"{q.get('val/acc', q.get('val/loss'))} |"]
    Path(a.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
