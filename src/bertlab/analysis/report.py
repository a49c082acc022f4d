"""report(sweep_dir): which setting of a sweep won, by how much, and is it noise?

Writes summary.csv (one row per job), summary.md (the same, plus mean ± std over seeds when the
sweep repeats seeds) and summary.png (the monitored metric against each swept numeric key) into
the sweep folder. Works on any sweep folder, finished or interrupted.
"""
from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

from omegaconf import OmegaConf

from bertlab.cli.checks import resolve_monitor
from bertlab.errors import ConfigError
from bertlab.files import markdown_table, write_csv


def parse_value(text: str):
    """A number if the text is one (Hydra writes lr=1e-05), else the text."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def read_yaml(path: Path):
    return OmegaConf.to_container(OmegaConf.load(path)) if path.exists() else {}


def read_job(job: Path) -> dict:
    overrides = read_yaml(job / ".hydra" / "overrides.yaml") or []
    swept = dict(o.lstrip("+").split("=", 1) for o in overrides
                 if "=" in o and not o.startswith(("hydra", "+optuna_trial", "resume=")))
    path = job / "metrics.json"
    try:
        metrics = json.loads(path.read_text()) if path.exists() else {"status": "incomplete"}
        if not isinstance(metrics, dict):
            raise ValueError(f"a JSON {type(metrics).__name__}, not an object")
    except (ValueError, UnicodeDecodeError) as e:  # (a disk filled or a hand edit: the rest stand)
        print(f"warning: {path} cannot be read ({str(e)[:80]}); job {job.name} is listed as "
              f"unreadable", file=sys.stderr)
        metrics = {"status": "unreadable", "error": f"metrics.json cannot be read: {str(e)[:80]}"}
    config = read_yaml(job / ".hydra" / "config.yaml") or {}
    monitor, mode = config.get("monitor", "val/loss"), config.get("mode", "min")
    if "auto" in (monitor, mode) and metrics.get("monitor"):  # a cv job's config keeps "auto"
        monitor, mode = resolve_monitor(metrics["monitor"], mode, metrics["task"])
    metrics = {**metrics, **metrics.get("mean", {})}  # a cv job: the folds' means are its metrics
    return {"job": job.name, "overrides": swept, "metrics": metrics, "monitor": monitor, "mode": mode}


def summarize(sweep_dir: str | Path) -> list[dict]:
    sweep = Path(sweep_dir)
    jobs = [read_job(p.parent.parent) for p in sweep.glob("*/.hydra/overrides.yaml")]
    if not jobs:
        raise ConfigError(f"sweep_dir={sweep_dir} holds no jobs (no */.hydra/overrides.yaml)")
    # a job that failed before its task was known still says "auto": take a resolved one's
    resolved = [j for j in jobs if j["monitor"] != "auto" and j["mode"] != "auto"]
    monitor, mode = (resolved[0]["monitor"], resolved[0]["mode"]) if resolved else ("val/loss", "min")
    keys = sorted({k for j in jobs for k in j["overrides"]})
    swept = [k for k in keys if len({j["overrides"].get(k) for j in jobs}) > 1]
    metric_keys = sorted({k for j in jobs for k in j["metrics"] if "/" in k})
    rows = []
    for j in jobs:
        m = j["metrics"]
        rows.append({"job": j["job"], **{k: j["overrides"].get(k, "") for k in swept},
                     "status": m.get("status"), "best_epoch": m.get("best_epoch"),
                     **{k: m.get(k) for k in metric_keys}, "wall_seconds": m.get("wall_seconds"),
                     "error": m.get("error", "")})
    sign = 1 if mode == "min" else -1
    rows.sort(key=lambda r: (r.get(monitor) is None, sign * (r.get(monitor) or 0), r["job"]))
    write_csv(sweep / "summary.csv", rows)
    groups = seed_groups(rows, swept, monitor, mode) if "seed" in swept else []
    trained = any((j["metrics"].get("data") or {}).get("validation", {}).get("not_carved_rows")
                  for j in jobs)  # (budget.trust_val_rows: too small a split to rank by)
    write_md(sweep / "summary.md", rows, groups, monitor, mode, swept, trained)
    plot(sweep / "summary.png", rows, swept, monitor)
    return rows


def seed_groups(rows: list[dict], swept: list[str], monitor: str, mode: str) -> list[dict]:
    """Finished jobs that differ only by seed: mean ± std of the monitored metric."""
    settings = [k for k in swept if k != "seed"]
    by = defaultdict(list)
    for r in rows:
        if r["status"] == "finished" and r.get(monitor) is not None:
            by[tuple(r[k] for k in settings)].append(r[monitor])
    out = [{**dict(zip(settings, key)), "seeds": len(v), "mean": statistics.fmean(v),
            "std": statistics.stdev(v) if len(v) > 1 else 0.0} for key, v in by.items()]
    return sorted(out, key=lambda g: g["mean"] * (1 if mode == "min" else -1))


def fmt(v) -> str:
    return f"{v:.4f}" if isinstance(v, float) else ("" if v is None else str(v))


def write_md(path: Path, rows, groups, monitor: str, mode: str, swept: list[str],
             trained: bool = False) -> None:
    """`trained`: some job's validation split was too small to carve, and trained."""
    done = [r for r in rows if r["status"] == "finished"]
    order = (f"sorted by {monitor} ({'lower' if mode == 'min' else 'higher'} is better)"
             if any(r.get(monitor) is not None for r in rows) else f"not ranked: no job has {monitor}"
             + (" (each job's validation split was too small to rank by, so its rows trained: "
                "budget.trust_val_rows; budget.trust_val_rows=0 carves one)" if trained else ""))
    lines = [f"# Sweep summary: {len(done)} of {len(rows)} jobs finished, {order}", ""]
    if groups:
        settings = [k for k in swept if k != "seed"]
        lines += [f"## Mean ± std of {monitor} over seeds", ""]
        lines += markdown_table(settings + ["seeds", monitor], [
            [g[k] for k in settings] + [g["seeds"], f"{g['mean']:.4f} ± {g['std']:.4f}"]
            for g in groups])
        lines += [""]
    cols = [c for c in rows[0] if c != "error"] + (["error"] if any(r["error"] for r in rows)
                                                   else [])
    lines += ["## Jobs", ""] + markdown_table(cols, [[fmt(r[c]) for c in cols] for r in rows])
    best = path.parent / "best.json"  # written by the Optuna sweeper
    if best.exists():
        b = json.loads(best.read_text())
        lines[2:2] = [f"## Search: {b['trials']} trials, {b['complete']} complete, {b['pruned']} "
                      f"pruned, {b['failed']} failed", "",
                      f"Best {monitor}: {b.get('best_value')} (trial {b.get('best_trial')}) with "
                      f"`{' '.join(f'{k}={v}' for k, v in (b.get('best_params') or {}).items())}`",
                      ""]
    path.write_text("\n".join(lines) + "\n")


def plot(path: Path, rows, swept: list[str], monitor: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    numeric = [k for k in swept if k != "seed" and all(
        isinstance(parse_value(str(r[k])), (int, float)) for r in rows if r[k] != "")]
    keys = numeric or ["job"]
    fig, axes = plt.subplots(1, len(keys), figsize=(4.5 * len(keys), 3.6), squeeze=False)
    for ax, key in zip(axes[0], keys):
        points = defaultdict(list)
        for r in rows:
            if r["status"] == "finished" and r.get(monitor) is not None:
                x = parse_value(str(r[key])) if key != "job" else parse_value(r["job"].split("_")[0])
                points[x].append(r[monitor])
        xs = sorted(points)
        means = [statistics.fmean(points[x]) for x in xs]
        stds = [statistics.stdev(points[x]) if len(points[x]) > 1 else 0.0 for x in xs]
        ax.errorbar(xs, means, yerr=stds, marker="o", capsize=3)
        if not xs:  # (jobs that validated nothing: their splits were too small, and trained)
            ax.text(0.5, 0.5, f"no job has {monitor}", ha="center", va="center",
                    transform=ax.transAxes)
        if key == "lr" or key.endswith(".lr"):
            ax.set_xscale("log")
        ax.set(xlabel=key, ylabel=monitor, title=f"{monitor} vs {key}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def report(cfg) -> list[dict]:
    rows = summarize(cfg.sweep_dir)
    print((Path(cfg.sweep_dir) / "summary.md").read_text())
    return rows
