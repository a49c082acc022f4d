"""shrink(cfg): a smaller copy of a trained run, and a before/after table."""
from __future__ import annotations

import copy
import json
import time
from pathlib import Path

import datasets
import torch
from omegaconf import DictConfig

from bertlab.models.scoring import collect, score
from bertlab.use.checks import check_shrink
from bertlab.data.datamodule import from_config
from bertlab.errors import ConfigError
from bertlab.files import markdown_table
from bertlab.models.compress import compress
from bertlab.models.checkpoints import find_checkpoint, load_model
from bertlab.cli.runs import run_config


def parameter_count(model) -> int:
    """Weights counted once whether float or int8 (quantised layers hide theirs in packed params)."""
    from torch.ao.nn.quantized.modules.linear import LinearPackedParams

    total = sum(p.numel() for p in model.parameters())
    for m in model.modules():
        if isinstance(m, LinearPackedParams):
            weight, bias = m._weight_bias()
            total += weight.numel() + (bias.numel() if bias is not None else 0)
    return total


@torch.inference_mode()
def latency_ms(model, batch: dict, repeats: int = 5) -> float:
    """CPU milliseconds per forward pass of one validation batch (best of `repeats`)."""
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    model(**inputs)  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model(**inputs)
        times.append(time.perf_counter() - start)
    return 1000 * min(times)


def measured_split(dm) -> str:
    """The validation split; a run whose split was too small to carve (its rows trained): the test."""
    split = next((s for s in ("validation", "test") if s in dm.dataset), None)
    if split is None:
        raise ConfigError("this run has neither a validation nor a test split to measure the "
                          "shrunk model on; train it with data.test_file or data.test_size")
    return split


def measure(model, dm, split: str, path: Path, monitor: str) -> dict:
    """Size, latency and the monitored metric (on the test split: as test/...) on `split`."""
    loader = dm.eval_dataloader(split)
    prefix = "val" if split == "validation" else "test"
    values = score(model.task, model.num_labels, prefix, *collect(model, loader))
    monitor = monitor.replace("val/", f"{prefix}/", 1)
    key = monitor if monitor in values else next(iter(values))
    return {"size_mb": round(path.stat().st_size / 2**20, 2), "parameters": parameter_count(model),
            "latency_ms": round(latency_ms(model, next(iter(loader))), 2),
            key: round(values[key], 4)}


def shrink(cfg: DictConfig) -> dict:
    check_shrink(cfg)
    ckpt = find_checkpoint(cfg.run_dir, cfg.ckpt_path)
    train_cfg = run_config(cfg.run_dir)
    model = load_model(ckpt)
    if model.hparams.get("shrink"):
        raise ConfigError(f"{ckpt} is already shrunk; shrink the original checkpoint")
    torch.set_num_threads(torch.get_num_threads())
    datasets.disable_progress_bars()
    dm = from_config(train_cfg, batch_size=cfg.batch_size, eval_batch_size=cfg.batch_size)
    dm.setup()
    split = measured_split(dm)
    small = compress(copy.deepcopy(model), cfg.drop_layers, cfg.int8)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    hp = dict(model.hparams)
    hp["shrink"] = {"drop_layers": cfg.drop_layers, "int8": bool(cfg.int8)}
    torch.save({"hyper_parameters": hp, "state_dict": small.state_dict()}, out / "model.ckpt")
    monitor = str(train_cfg.monitor)
    rows = {"before": measure(model, dm, split, ckpt, monitor),
            "after": measure(small, dm, split, out / "model.ckpt", monitor)}
    keys = list(rows["before"])
    table = markdown_table(["", *keys], [[name, *(r[k] for k in keys)] for name, r in rows.items()])
    (out / "shrink.md").write_text("\n".join(table) + "\n")
    (out / "shrink.json").write_text(json.dumps(rows, indent=1))
    print("\n".join(table))
    print(f"smaller model: {out / 'model.ckpt'} (predict.py ckpt_path=... loads it)")
    return rows
