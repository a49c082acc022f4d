"""The network alone (torch + transformers, no Lightning): built, run, and loaded for prediction."""
from __future__ import annotations

import inspect
import json
from pathlib import Path

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForSequenceClassification
from transformers.modeling_outputs import BaseModelOutputWithPastAndCrossAttentions
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from bertlab.errors import ConfigError
from bertlab.hub import check_local, ensure_hub_or_offline, from_pretrained
from bertlab.task import Task, task_of

# Model types whose sequence-classification head reads only the first ([CLS]/<s>) position and
# whose layers have BERT's layout (attention.self.query/key/value, attention.output,
# feed_forward_chunk): for these the top layer can compute that one position alone.
FIRST_TOKEN_HEADS = {"bert", "roberta", "xlm-roberta", "camembert", "electra"}
POOLINGS = ("cls", "mean")  # and "auto", which choose_pooling() makes one of them before a build
# Model types whose head is dropout and one linear layer over a pooled vector, so that it can
# read the mean of the token outputs instead of the [CLS] pooler (model.pooling=mean).
MEAN_POOLING_TYPES = {"bert"}

def build_network(cfg: dict, task: str | Task, labels: list[str],
                  target_scale: list[float] | None = None) -> nn.Module:
    """A Hugging Face *ForSequenceClassification model: the encoder plus its standard head.

    Standard, so that an export is a plain Hugging Face folder that `pipeline()` loads
    (model.pooling=mean: the same head over the tokens' mean, which logits() computes and the
    export carries as code).
    `pretrained=false` gives random weights of the same (or an overridden) shape.
    Regression with `target_scale` ([mean, std] of the training targets): the head learns the
    standardized target and logits() returns head * std + mean, in the label's units.
    """
    task = task_of(task)
    pooling = cfg.get("pooling", "cls")
    if pooling not in POOLINGS:
        raise ConfigError(f"model.pooling={pooling!r} is not valid; use {', '.join(POOLINGS)} or auto")
    names = {} if not task.has_classes else {
        "id2label": dict(enumerate(labels)), "label2id": {n: i for i, n in enumerate(labels)}}
    config = from_pretrained(AutoConfig, cfg["name_or_path"], num_labels=task.num_outputs(labels),
                             problem_type=task.problem_type, **names,
                             **cfg.get("config_overrides", {}))
    if pooling == "mean" and config.model_type not in MEAN_POOLING_TYPES:
        raise ConfigError(f"model.pooling=mean is for {', '.join(sorted(MEAN_POOLING_TYPES))} "
                          f"models; {cfg['name_or_path']} is a {config.model_type}: use "
                          f"model.pooling=cls")
    if cfg.get("pretrained", True):
        net = from_pretrained(AutoModelForSequenceClassification, cfg["name_or_path"],
                              config=config)
    else:
        net = AutoModelForSequenceClassification.from_config(config)
    if pooling == "mean":
        net.base_model.pooler = None  # the [CLS] pooler would feed nothing (and get no gradient)
        net.config.bertlab_pooling = "mean"  # read by logits(); an export carries it
        net.config.bertlab_normalize = cfg.get("normalize") is True  # (train.py resolves auto)
    elif cfg.get("top_layer_cls_only", True):
        top_layer_cls_only(net)
    if target_scale is not None and not task.has_classes:
        net.config.bertlab_target_scale = [float(v) for v in target_scale]  # read by logits()
    if cfg.get("peft"):
        net = add_adapters(net, cfg["peft"], cfg.get("lora") or {})
    return net.train()  # from_pretrained returns eval mode, which would switch dropout off


# attention (query, key, value, output) and feed-forward projections, by model type; others get
# peft's own defaults for their type
LORA_TARGETS = {t: ["query", "key", "value", "dense"]
                for t in ("bert", "roberta", "xlm-roberta", "camembert", "electra")} | {
    "distilbert": ["q_lin", "k_lin", "v_lin", "out_lin", "lin1", "lin2"]}


def add_adapters(net: nn.Module, method: str, lora: dict) -> nn.Module:
    """model.peft=lora: the network with LoRA adapters (peft); only they and the classification
    head (peft's modules_to_save for sequence classification) train (`method` is checked in
    training/checks.check_choices)."""
    from peft import LoraConfig, TaskType, get_peft_model

    targets = lora.get("target_modules") or LORA_TARGETS.get(net.config.model_type)
    if isinstance(targets, str):  # one name (model.lora.target_modules=query), not its letters
        targets = [targets]
    config = LoraConfig(task_type=TaskType.SEQ_CLS, r=int(lora.get("r", 8)),
                        lora_alpha=lora.get("alpha", 16), lora_dropout=lora.get("dropout", 0.1),
                        target_modules=list(targets) if targets else None)
    try:
        return get_peft_model(net, config)
    except ValueError as e:  # peft's NoMatchingPeftModuleError (older versions: a ValueError)
        if type(e).__name__ != "NoMatchingPeftModuleError" and "not found in the base model" not in str(e):
            raise
        names = sorted({n.rsplit(".", 1)[-1] for n, m in net.named_modules()
                        if isinstance(m, nn.Linear)})
        raise ConfigError(f"model.lora.target_modules={list(targets)} match no layer of "
                          f"{type(net).__name__}; its linear layers are named: "
                          f"{', '.join(names)}") from None


def plain(net: nn.Module) -> nn.Module:
    """The Hugging Face model itself: a LoRA network's adapters merged into its weights."""
    return net.merge_and_unload() if hasattr(net, "merge_and_unload") else net


def top_layer_cls_only(net: nn.Module) -> bool:
    """Make the top encoder layer compute only the first position, the one the head reads.

    The outputs and gradients are the same (the other positions' top-layer outputs feed nothing),
    and the top layer's cost falls to its key and value projections: 14% of the encoder's work
    for 6 layers (MiniLM), 7% for 12. Hand-written: neither transformers nor torch offers it.
    Returns whether the model allows it (its type is in FIRST_TOKEN_HEADS, eager or sdpa attention).
    """
    encoder = getattr(net.base_model, "encoder", None)
    if (net.config.model_type not in FIRST_TOKEN_HEADS or net.config.is_decoder
            or net.config._attn_implementation not in ("eager", "sdpa")
            or not hasattr(encoder, "layer")):
        return False
    encoder.forward = _first_token_encoder.__get__(encoder)  # the instance's forward; weights untouched
    return True


def _first_token_encoder(encoder: nn.Module, hidden_states: torch.Tensor,
                         attention_mask: torch.Tensor | None = None, *args, **kwargs):
    """BertEncoder.forward with the top layer (whichever it is now: shrink may drop layers) run
    for position 0 only; last_hidden_state is then [batch, 1, hidden]."""
    *lower, top = encoder.layer
    for layer in lower:
        hidden_states = layer(hidden_states, attention_mask)
    sa, first = top.attention.self, hidden_states[:, :1]
    heads = (hidden_states.shape[0], -1, sa.num_attention_heads, sa.attention_head_size)
    query = sa.query(first).view(heads).transpose(1, 2)
    key = sa.key(hidden_states).view(heads).transpose(1, 2)
    value = sa.value(hidden_states).view(heads).transpose(1, 2)
    if attention_mask is not None and attention_mask.shape[-2] > 1:  # [b, 1, q, k]: keep query 0
        attention_mask = attention_mask[..., :1, :]
    eager = inspect.getmodule(type(sa)).eager_attention_forward  # each architecture has its own
    attend = ALL_ATTENTION_FUNCTIONS.get_interface(sa.config._attn_implementation, eager)
    context, _ = attend(sa, query, key, value, attention_mask, scaling=sa.scaling,
                        dropout=sa.dropout.p if sa.training else 0.0)
    attention = top.attention.output(context.reshape(first.shape[0], 1, -1), first)
    return BaseModelOutputWithPastAndCrossAttentions(
        last_hidden_state=top.feed_forward_chunk(attention))


def unwrapped(net: nn.Module) -> nn.Module:
    """The Hugging Face model (with LoRA: the one inside the adapter wrapper, adapters in place)."""
    return net.get_base_model() if hasattr(net, "get_base_model") else net


def encoder_parts(net: nn.Module) -> tuple[nn.Module, list[nn.Module]]:
    """The embeddings and the list of transformer layers of a BERT-family model."""
    base = unwrapped(net).base_model
    stack = getattr(base, "encoder", None) or getattr(base, "transformer", None)
    layers = getattr(stack, "layer", None)
    if layers is None or not hasattr(base, "embeddings"):
        raise ConfigError(f"freezing and layer decay need a BERT-like encoder (embeddings + "
                          f"layers); {type(base).__name__} has another layout")
    return base.embeddings, list(layers)


def freeze(net: nn.Module, cfg: dict) -> list[nn.Module]:
    """Freeze what model.freeze_* asks; returns the frozen modules (to unfreeze later)."""
    embeddings, layers = encoder_parts(net) if any(
        cfg.get(k) for k in ("freeze_embeddings", "freeze_layers", "freeze_encoder")) else (None, [])
    n = len(layers) if cfg.get("freeze_encoder") else int(cfg.get("freeze_layers") or 0)
    if not 0 <= n <= len(layers):
        raise ConfigError(f"model.freeze_layers={n} is not valid; this encoder has "
                          f"{len(layers)} layers")
    frozen = ([embeddings] if cfg.get("freeze_embeddings") or n or cfg.get("freeze_encoder")
              else []) + layers[:n]
    for module in frozen:  # (LoRA's adapters inside a frozen layer still train: they are the model)
        for name, param in module.named_parameters():
            if "lora_" not in name:
                param.requires_grad_(False)
    return frozen


def layer_depths(net: nn.Module) -> dict[str, int]:
    """Parameter name -> depth: 0 for the embeddings, i + 1 for layer i, top + 1 for the head."""
    embeddings, layers = encoder_parts(net)
    depth = {id(p): 0 for p in embeddings.parameters()}
    for i, layer in enumerate(layers):
        depth.update({id(p): i + 1 for p in layer.parameters()})
    return {name: depth.get(id(p), len(layers) + 1) for name, p in net.named_parameters()}


def logits(net: nn.Module, task: Task, input_ids: torch.Tensor, attention_mask: torch.Tensor,
           token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
    kwargs = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
    if pools_mean(net):
        out = mean_pooled_logits(net, input_ids, attention_mask, **kwargs)
    else:
        out = net(input_ids=input_ids, attention_mask=attention_mask, **kwargs).logits
    scale = target_scale(net)
    if scale is None:
        return task.logits(out)
    return task.logits(out).float() * scale[1] + scale[0]  # (fp32: bf16 would round 1e4 to 32)


def target_scale(net: nn.Module) -> list[float] | None:
    """Regression: [mean, std] of the training targets that the head's output is scaled by (the
    head learns the standardized target), or None (classes, and older checkpoints: raw outputs)."""
    return getattr(unwrapped(net).config, "bertlab_target_scale", None)


def fold_target_scale(net: nn.Module) -> None:
    """Put the target's scale, if any, into the head's output layer (weight * std, bias * std +
    mean), so that an exported Hugging Face model predicts in the label's units with nothing to
    apply."""
    scale = target_scale(net)
    if scale is None:
        return
    mean, std = scale
    head = output_layer(net)
    with torch.no_grad():
        head.weight *= std
        head.bias.mul_(std).add_(mean)
    del unwrapped(net).config.bertlab_target_scale


def choose_pooling(model: dict, rows: int) -> tuple[str, str]:
    """(pooling, why) for `rows` training rows: model.pooling as given, or for `auto` mean below
    model.auto_mean_rows rows (scarce labels: the sentence vector a sentence-transformers checkpoint
    was pretrained to give is worth most where the encoder can move least) and cls from there on;
    cls with peft (an adapter_only export's base model reads [CLS])."""
    pooling = model.get("pooling", "cls")
    if pooling != "auto":
        return pooling, "given"
    below = model.get("auto_mean_rows") or 0
    if isinstance(below, bool) or not isinstance(below, int) or below < 0:
        raise ConfigError(f"model.auto_mean_rows={below!r} is not valid; use a row count >= 0 "
                          "(pooling=auto reads mean below it)")
    if model.get("peft"):
        return "cls", f"auto: peft={model['peft']} keeps the [CLS] head that its adapter exports need"
    if rows < below:
        return "mean", f"auto: {rows} training rows (under {below}): the mean of the token outputs"
    return "cls", f"auto: {rows} training rows (at least {below}): the [CLS] pooler"


def pools_mean(net: nn.Module) -> bool:
    """Whether the network was built with model.pooling=mean (its config says so)."""
    return getattr(net.config, "bertlab_pooling", "cls") == "mean"


def mean_pooled_logits(net: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                       **kwargs) -> torch.Tensor:
    """model.pooling=mean: the head (dropout, linear) over the mean of the top layer's outputs at
    the text's tokens, as sentence-transformers pools. Hand-written: transformers' BERT head reads
    [CLS] only."""
    hf = unwrapped(net)
    return hf.classifier(hf.dropout(sentence_vector(hf, input_ids, attention_mask, **kwargs)))


def sentence_vector(hf: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                    **kwargs) -> torch.Tensor:
    """What a mean-pooling head reads: the mean of the top layer's outputs at the text's tokens,
    as a unit vector where the network was built with model.normalize (the checkpoint's
    sentence-transformers Normalize)."""
    hidden = hf.base_model(input_ids=input_ids, attention_mask=attention_mask,
                           **kwargs).last_hidden_state
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
    if getattr(hf.config, "bertlab_normalize", False):
        pooled = nn.functional.normalize(pooled.float(), dim=-1).to(pooled.dtype)
    return pooled


def choose_normalize(model: dict, pooling: str) -> tuple[bool, str]:
    """(normalize, why): whether a mean-pooling head reads the mean as a unit vector.
    model.normalize as given, or for `auto` as the checkpoint's own sentence-transformers
    pipeline gives its sentence vector: a Normalize module in its modules.json (all-MiniLM-L6-v2's
    has one). Only mean pooling reads it."""
    given = model.get("normalize", "auto")
    if given not in (True, False, "auto"):
        raise ConfigError(f"model.normalize={given!r} is not valid; use auto, true or false")
    if pooling != "mean":
        return False, "pooling=cls reads the [CLS] pooler"
    if given != "auto":
        return given, "given"
    if not model.get("pretrained", True):
        return False, "auto: random weights (pretrained=false) give no sentence vector"
    modules = sentence_modules(model["name_or_path"])
    if any(m.get("type", "").endswith(".Normalize") for m in modules):
        return True, "auto: the checkpoint's sentence-transformers modules.json normalizes"
    return False, "auto: the checkpoint's sentence vector is not normalized (no Normalize module)"


def sentence_modules(name_or_path: str) -> list[dict]:
    """The modules.json of a sentence-transformers checkpoint (a local folder, or a Hub id
    from the Hub's cache or the Hub); [] where there is none."""
    folder = check_local(name_or_path)
    if folder is None:
        ensure_hub_or_offline()  # (offline: the Hub's cache only, in no time)
        try:
            from huggingface_hub import hf_hub_download

            path = Path(hf_hub_download(name_or_path, "modules.json"))
        except Exception:  # none there, or not cached offline: the model loader names the problem
            return []
    else:
        path = folder / "modules.json"
    try:
        return json.loads(path.read_text()) if path.is_file() else []
    except ValueError:
        return []


class HParams(dict):
    """A checkpoint's settings, readable as attributes (hp.max_length), like Lightning's."""

    __getattr__ = dict.__getitem__


class TrainedNetwork(nn.Module):
    """A checkpoint's network and settings, for prediction: what TextClassifier holds, without
    importing Lightning and torchmetrics (seconds of start-up for every predict.py call)."""

    def __init__(self, hparams: dict) -> None:
        super().__init__()
        self.hparams = HParams(hparams)
        self.task = task_of(hparams["task"])
        self.net = build_network({**hparams["model"], "pretrained": False}, self.task,
                                 list(hparams["labels"]), hparams.get("target_scale"))
        self.temperature = 1.0  # calibrate=true: the fitted temperature (calibration.py)
        self.thresholds: list[float] | None = None  # multi-label decisions (thresholds.py)

    def forward(self, input_ids, attention_mask, token_type_ids=None) -> torch.Tensor:
        out = logits(self.net, self.task, input_ids, attention_mask, token_type_ids)
        return out / self.temperature if self.temperature != 1.0 else out


def output_layer(net: nn.Module) -> nn.Linear:
    """The classification head's last linear layer (the logits)."""
    head = [m for m in net.modules() if isinstance(m, nn.Linear)][-1]
    if head.out_features != net.config.num_labels:
        raise ValueError(f"the last linear layer of {type(net).__name__} is not its head")
    return head
