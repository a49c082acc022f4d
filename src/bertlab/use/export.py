"""export(cfg): a trained run as a plain Hugging Face folder that `pipeline()` loads, or as an ONNX
model (with its tokenizer and label map) that ONNX Runtime runs."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from omegaconf import DictConfig, OmegaConf
from transformers import AutoTokenizer

from bertlab.errors import ConfigError, require
from bertlab.files import markdown_table, written_whole
from bertlab.hub import from_pretrained
from bertlab.stages import thresholds
from bertlab.use.checks import export_folder
from bertlab.stages.calibration import fold_into_head
from bertlab.models.checkpoints import find_checkpoint, load_model, load_network
from bertlab.models.network import fold_target_scale, plain, pools_mean
from bertlab.cli.runs import recorded, run_config, trained_pair_column, trained_text_column

CARD = """---
library_name: transformers
pipeline_tag: text-classification
tags: [bertlab]
---
# {name}

Fine-tuned with bertlab from {base} for {task}{labels}.

```python
from transformers import pipeline
clf = pipeline("text-classification", model="{out}"{remote})
clf("some text", top_k=None)
```
{pooling}{decisions}{windows}
## Data
{data}

Text was cleaned before tokenizing with: {clean}. `pipeline()` does not clean, so apply the same
steps (`bertlab.data.clean.cleaner`) to raw text for the same results as training.

## Hyperparameters
{hparams}

## Metrics (best checkpoint)
{metrics}
"""

DECISIONS = """
Multi-label: call `clf(texts, top_k=None, function_to_apply="sigmoid")`; a label applies when its
score is over 0.5. Each label's output bias is shifted so that 0.5 is the threshold chosen on the
validation split for it ({thresholds}, on the model's probabilities; `config.bertlab_thresholds`).
"""

WINDOWS = """
Trained on long texts in windows of {max_length} tokens sharing {stride} tokens, each text's
prediction being the {pool} of its windows' logits (`config.bertlab_windows`). `pipeline()`
truncates a longer text to its first window; bertlab's `predict.py` reads all of them.
"""

POOLING = """
The head reads the mean of the encoder's outputs over the text's tokens (`model.pooling=mean`,
as sentence-transformers checkpoints were trained), which transformers' BERT head (it reads
[CLS]) does not do: `modeling_bertlab.py` here does, so load the folder with
`trust_remote_code=True`; without it, transformers refuses the folder.
"""

# Written next to an export of a model.pooling=mean run: the one head transformers lacks.
MEAN_POOLING_CODE = '''"""BERT with a classification head over the mean of the token outputs (bertlab's
model.pooling=mean; transformers' BertForSequenceClassification reads [CLS]). Written by bertlab's
export.py; load the folder with trust_remote_code=True."""
import torch
from transformers import BertConfig, BertForSequenceClassification
from transformers.modeling_outputs import SequenceClassifierOutput


class BertMeanPoolingConfig(BertConfig):
    model_type = "bertlab-mean-pooling"


class BertMeanPoolingForSequenceClassification(BertForSequenceClassification):
    config_class = BertMeanPoolingConfig

    def __init__(self, config):
        super().__init__(config)
        self.bert.pooler = None  # the head reads the mean, not the [CLS] pooler

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, **kwargs):
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                           token_type_ids=token_type_ids).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
        if getattr(self.config, "bertlab_normalize", False):  # model.normalize: the unit vector
            pooled = torch.nn.functional.normalize(pooled.float(), dim=-1).to(pooled.dtype)
        return SequenceClassifierOutput(logits=self.classifier(self.dropout(pooled)))
'''


def add_mean_pooling_code(folder: Path) -> None:
    """model.pooling=mean: modeling_bertlab.py, and a config.json whose model type only it
    knows, so that transformers runs it (trust_remote_code=True) or refuses, never the [CLS] head."""
    (folder / "modeling_bertlab.py").write_text(MEAN_POOLING_CODE)
    path = folder / "config.json"
    config = json.loads(path.read_text()) | {
        "model_type": "bertlab-mean-pooling",
        "architectures": ["BertMeanPoolingForSequenceClassification"],
        "auto_map": {"AutoConfig": "modeling_bertlab.BertMeanPoolingConfig",
                     "AutoModelForSequenceClassification":
                         "modeling_bertlab.BertMeanPoolingForSequenceClassification"}}
    path.write_text(json.dumps(config, indent=2))


def base_model(m: dict) -> str:
    """The model's public name for the card, never a path on this machine."""
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
                     "text_column", "text_pair_column", "label_column", "val_size", "max_val_rows",
                     "test_size")
            and v is not None}
    table = lambda d: "\n".join(markdown_table(["key", "value"], list(d.items())))  # noqa: E731
    return CARD.format(
        name=out.name, base=base_model(hp.model), task=model.task, out=out,
        remote=", trust_remote_code=True" if pools_mean(model.net) else "",
        pooling=POOLING if pools_mean(model.net) else "",
        labels=f" ({', '.join(hp.labels)})" if hp.labels else "", clean=", ".join(hp.clean),
        windows=WINDOWS.format(max_length=hp.max_length, **hp.windows) if hp.get("windows") else "",
        decisions=DECISIONS.format(thresholds=", ".join(
            f"{n}: {t:.3f}" for n, t in zip(hp.labels, model.thresholds))) if model.thresholds else "",
        data=table(data), hparams=table(hparams),
        metrics=table({k: round(v, 4) for k, v in metrics.items() if "/" in k}))


def export(cfg: DictConfig) -> Path:
    out = export_folder(cfg)
    ckpt = find_checkpoint(cfg.run_dir, cfg.ckpt_path)
    if cfg.format == "onnx":
        return export_onnx(ckpt, out, bool(cfg.int8), Path(cfg.run_dir))
    model = load_model(ckpt)
    if cfg.adapter_only:
        return export_adapter(model, ckpt, out)
    model.net = plain(model.net)  # LoRA: the adapters merged in, a plain Hugging Face model
    fold_target_scale(model.net)  # regression: the label's units, in the weights
    if model.temperature != 1.0:  # calibrate=true: the calibrated probabilities, in the weights
        fold_into_head(model.net, model.temperature)
    if model.thresholds:  # multi-label: sigmoid > 0.5 in pipeline() is the run's decision
        thresholds.fold_into_head(model.net, model.thresholds)
        model.net.config.bertlab_thresholds = dict(zip(model.hparams.labels, model.thresholds))
    if model.hparams.get("windows"):  # how bertlab reads long texts; pipeline() truncates
        model.net.config.bertlab_windows = {"max_length": model.hparams.max_length,
                                            **model.hparams.windows}
    tokenizer = from_pretrained(AutoTokenizer, model.hparams.model["tokenizer"],
                                what="model.tokenizer")
    tokenizer.model_max_length = model.hparams.max_length  # pipeline(truncation=True) agrees
    with written_whole(out) as tmp:
        model.net.save_pretrained(tmp)  # safetensors, config with id2label / label2id / problem_type
        tokenizer.save_pretrained(tmp)
        if pools_mean(model.net):
            add_mean_pooling_code(tmp)
        (tmp / "README.md").write_text(model_card(Path(cfg.run_dir), out, model))
    print(f"exported {ckpt} to {out}", file=sys.stderr)
    return out


def export_adapter(model, ckpt: Path, out: Path) -> Path:
    """model.peft=lora: the adapter folder alone (adapter_config.json, adapter_model.safetensors
    with the head), which peft's PeftModel.from_pretrained puts on the base model."""
    if not hasattr(model.net, "peft_config"):
        raise ConfigError(f"{ckpt} has no adapters (it was not trained with model.peft=lora); "
                          f"drop adapter_only for the whole model")
    if pools_mean(model.net):
        raise ConfigError("adapter_only=true: peft puts the adapter on transformers' BERT head, "
                          "which reads [CLS], and this run's head reads the mean of the tokens "
                          "(model.pooling=mean); drop adapter_only for the whole model")
    fold_target_scale(model.net)  # regression: the saved head predicts in the label's units
    tokenizer = from_pretrained(AutoTokenizer, model.hparams.model["tokenizer"], what="model.tokenizer")
    tokenizer.model_max_length = model.hparams.max_length
    with written_whole(out) as tmp:
        model.net.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    print(f"exported the adapter of {ckpt} to {out}", file=sys.stderr)
    return out


class Scored(torch.nn.Module):
    """The network with both outputs a user of the ONNX file needs: logits and scores
    (probabilities, multi-label sigmoid scores, or the regression value)."""

    def __init__(self, model) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        logits = self.model(input_ids, attention_mask, token_type_ids)
        return logits, self.model.task.scores(logits)


def export_onnx(ckpt: Path, out: Path, int8: bool, run_dir: Path) -> Path:
    """model.onnx (dynamic batch and sequence axes), the tokenizer, and bertlab.json (task,
    labels, cleaning, max_length) into `out`. Hand-written on torch.onnx and ONNX Runtime's
    quantiser because optimum's exporter needs transformers < 4.58. The TorchScript exporter
    is used (as optimum does): its graph runs ~20% faster in ONNX Runtime on int8 than the dynamo
    exporter's, whose attention ONNX Runtime does not fuse."""
    import warnings

    require("onnx", "onnx", "export.py format=onnx")
    if int8:
        require("onnxruntime", "onnx", "export.py format=onnx int8=true")
    model = load_network(ckpt)
    if model.hparams.get("shrink", {}).get("int8"):
        raise ConfigError(f"{ckpt} is an int8 torch model (shrink.py); export the run's own "
                          f"checkpoint with format=onnx int8=true instead")
    model.net.set_attn_implementation("eager")  # the attention pattern ONNX Runtime fuses
    tokenizer = from_pretrained(AutoTokenizer, model.hparams.model["tokenizer"], what="model.tokenizer")
    example = tokenizer(["an example", "a longer example text"], padding=True, return_tensors="pt")
    names = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in example]
    axes = {k: {0: "batch", 1: "sequence"} for k in names} | {"logits": {0: "batch"}, "scores": {0: "batch"}}
    pair_column = trained_pair_column(run_dir) or ""
    with written_whole(out) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notes
        tmp.mkdir(parents=True)
        graph = tmp / ("float.onnx" if int8 else "model.onnx")
        torch.onnx.export(Scored(model), tuple(example[k] for k in names), str(graph), dynamo=False,
                          input_names=names, output_names=["logits", "scores"], dynamic_axes=axes,
                          opset_version=17)
        if int8:  # int8 weights, activations quantised on the fly (ONNX Runtime's dynamic quantiser)
            import logging

            from onnxruntime.quantization import QuantType, quantize_dynamic

            logging.disable(logging.WARNING)  # its notes on every tensor it leaves in float
            try:
                quantize_dynamic(graph, tmp / "model.onnx", weight_type=QuantType.QInt8)
            finally:
                logging.disable(logging.NOTSET)
            graph.unlink()
        tokenizer.model_max_length = model.hparams.max_length
        tokenizer.save_pretrained(tmp)
        hp = model.hparams
        (tmp / "bertlab.json").write_text(json.dumps({
            "task": model.task.name, "labels": list(hp.labels), "clean": list(hp.clean),
            "max_length": hp.max_length, "pair": bool(pair_column),
            "text_pair_column": pair_column or None, "int8": int8, "inputs": names,
            "text_column": trained_text_column(run_dir) or "text",
            "thresholds": model.thresholds, "windows": hp.get("windows"),
            "checkpoint": str(ckpt.resolve())}, indent=1))
    print(f"exported {ckpt} to {out / 'model.onnx'}" + (" (int8)" if int8 else ""), file=sys.stderr)
    return out
