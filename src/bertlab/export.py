"""export(cfg): a trained run as a plain Hugging Face folder that `pipeline()` loads."""
from __future__ import annotations

import sys
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from transformers import AutoTokenizer

from bertlab.errors import ConfigError
from bertlab.files import markdown_table, written_whole
from bertlab.hub import from_pretrained
from bertlab.checkpoints import find_checkpoint, load_model
from bertlab.runs import recorded, run_config

CARD = """---
library_name: transformers
pipeline_tag: text-classification
tags: [bertlab]
---
# {name}

Fine-tuned with bertlab from {base} for {task}{labels}.

```python
from transformers import pipeline
clf = pipeline("text-classification", model="{out}")
clf("some text", top_k=None)
```

## Data
{data}

Text was cleaned before tokenizing with: {clean}. `pipeline()` does not clean, so apply the same
steps (`bertlab.data.clean.cleaner`) to raw text for the same results as training.

## Hyperparameters
{hparams}

## Metrics (best checkpoint)
{metrics}
"""


def base_model(m: dict) -> str:
    """The model's public name for the card, never a path on this machine."""
    import json

    if not m.get("pretrained", True):
        return "a randomly initialised encoder (no pretrained weights)"
    if m.get("id"):
        return f"`{m['id']}`"
    path = Path(m["name_or_path"])
    if path.is_dir():  # a local copy: the Hub id it was saved from, if it says
        try:
            name = json.loads((path / "config.json").read_text()).get("_name_or_path", "")
        except (OSError, ValueError):
            name = ""
        return f"`{name}`" if name and not Path(name).is_absolute() else f"a local model (`{path.name}`)"
    return f"`{m['name_or_path']}`"


def model_card(run_dir: Path, out: Path, model) -> str:
    cfg = run_config(run_dir)
    metrics = recorded(run_dir)
    hp = model.hparams
    keep = ("lr", "batch_size", "max_epochs", "max_length", "weight_decay", "seed")
    schedule = cfg.scheduler.get("schedule", cfg.scheduler)  # (runs before it had its own block)
    hparams = {k: cfg[k] for k in keep} | {"optimizer": cfg.optimizer._target_,
                                           "scheduler": schedule.get("name")}
    if hparams["max_epochs"] is None:  # the budget chose
        hparams["max_epochs"] = f"{metrics.get('epochs')} epochs, {metrics.get('steps')} steps (budget)"
    data = {k: Path(v).name if k.endswith("_file") else v  # a file's name, not this machine's path
            for k, v in OmegaConf.to_container(cfg.data).items()
            if k in ("source", "train_file", "validation_file", "test_file", "path", "name",
                     "text_column", "text_pair_column", "label_column", "val_size", "test_size")
            and v is not None}
    table = lambda d: "\n".join(markdown_table(["key", "value"], list(d.items())))  # noqa: E731
    return CARD.format(
        name=out.name, base=base_model(hp.model), task=model.task, out=out,
        labels=f" ({', '.join(hp.labels)})" if hp.labels else "", clean=", ".join(hp.clean),
        data=table(data), hparams=table(hparams),
        metrics=table({k: round(v, 4) for k, v in metrics.items() if "/" in k}))


def export(cfg: DictConfig) -> Path:
    out = Path(cfg.out)
    if out.exists():
        raise ConfigError(f"out={out} exists already; choose a new folder")
    ckpt = find_checkpoint(cfg.run_dir, cfg.ckpt_path)
    model = load_model(ckpt)
    tokenizer = from_pretrained(AutoTokenizer, model.hparams.model["tokenizer"],
                                what="model.tokenizer")
    tokenizer.model_max_length = model.hparams.max_length  # pipeline(truncation=True) agrees
    with written_whole(out) as tmp:
        model.net.save_pretrained(tmp)  # safetensors, config with id2label / label2id / problem_type
        tokenizer.save_pretrained(tmp)
        (tmp / "README.md").write_text(model_card(Path(cfg.run_dir), out, model))
    print(f"exported {ckpt} to {out}", file=sys.stderr)
    return out
