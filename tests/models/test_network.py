"""The network's speed-ups that must not change its results (the top layer run for [CLS] only),
and its heads: [CLS] (transformers') or the mean of the tokens (model.pooling=mean)."""
from __future__ import annotations

import copy

import pytest
import torch
from transformers import AutoConfig, AutoModelForSequenceClassification

from bertlab.models.compress import drop_top_layers
from bertlab.errors import ConfigError
from bertlab.models.network import build_network, logits, top_layer_cls_only
from bertlab.task import task_of


def tiny(model_type: str, attn: str = "sdpa", layers: int = 3):
    cfg = AutoConfig.for_model(model_type, hidden_size=32, num_hidden_layers=layers,
                               num_attention_heads=2, intermediate_size=64, vocab_size=100,
                               num_labels=3, attn_implementation=attn)
    torch.manual_seed(0)
    return AutoModelForSequenceClassification.from_config(cfg)


def batch():
    ids = torch.randint(5, 100, (4, 9), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[1, 5:], mask[2, 2:] = 0, 0  # padded rows, one nearly empty
    return {"input_ids": ids, "attention_mask": mask}


def outputs_and_grads(net):
    logits = net(**batch()).logits
    (logits * torch.arange(1.0, 4.0)).sum().backward()
    return logits.detach(), [p.grad for p in net.parameters()]


@pytest.mark.parametrize("model_type", ["bert", "roberta", "xlm-roberta", "electra"])
@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_cls_only_top_layer_gives_the_same_logits_and_gradients(model_type, attn):
    full = tiny(model_type, attn).eval()
    fast = copy.deepcopy(full)
    assert top_layer_cls_only(fast)
    assert fast.base_model(**batch()).last_hidden_state.shape == (4, 1, 32)  # one position computed
    (a, grads_a), (b, grads_b) = outputs_and_grads(full), outputs_and_grads(fast)
    assert torch.allclose(a, b, atol=1e-6)
    assert all(ga is not None and torch.allclose(ga, gb, atol=1e-6)
               for ga, gb in zip(grads_a, grads_b))


def test_cls_only_follows_the_top_layer_when_layers_are_dropped():
    full, fast = tiny("bert").eval(), tiny("bert").eval()
    top_layer_cls_only(fast)
    drop_top_layers(full, 1)
    drop_top_layers(fast, 1)  # shrink drops layers after the model is built
    assert torch.allclose(full(**batch()).logits, fast(**batch()).logits, atol=1e-6)


def test_other_layouts_are_left_alone():
    net = tiny("distilbert")
    assert not top_layer_cls_only(net)
    assert net.base_model(**batch()).last_hidden_state.shape == (4, 9, 32)


@pytest.mark.parametrize("on", [True, False])
def test_the_model_config_switches_it(make_cfg, on):
    cfg = make_cfg(f"model.top_layer_cls_only={on}")
    net = build_network(dict(cfg.model), "classification", ["a", "b"])
    width = net.base_model(**batch()).last_hidden_state.shape[1]
    assert width == (1 if on else 9)


def test_mean_pooling_reads_the_mean_of_the_text_tokens(make_cfg):
    cfg = make_cfg("model.pooling=mean")
    net = build_network(dict(cfg.model), "classification", ["a", "b", "c"]).eval()
    assert net.base_model.pooler is None  # the [CLS] pooler would feed nothing
    b, task = batch(), task_of("classification")
    out = logits(net, task, **b)
    hidden = net.base_model(**b).last_hidden_state  # every position: top_layer_cls_only is off
    assert hidden.shape[1] == 9
    mask = b["attention_mask"].unsqueeze(-1).float()
    expected = net.classifier((hidden * mask).sum(1) / mask.sum(1))
    assert torch.allclose(out, expected, atol=1e-6)
    # padding does not move a text's logits: row 2 alone, unpadded, scores the same
    alone = logits(net, task, b["input_ids"][2:3, :2], b["attention_mask"][2:3, :2])
    assert torch.allclose(alone, out[2:3], atol=1e-5)
    net.train()
    logits(net, task, **b).sum().backward()
    assert all(p.grad is not None for p in net.parameters())  # nothing unused (DDP would refuse)


def test_pooling_mistakes_are_one_line(make_cfg, tmp_path):
    cfg = dict(make_cfg("model.pooling=mean").model)
    with pytest.raises(ConfigError, match=r"^model.pooling='max' is not valid; use cls, mean or auto$"):
        build_network({**cfg, "pooling": "max"}, "classification", ["a", "b"])
    tiny("roberta").config.save_pretrained(tmp_path)  # a head that is not dropout + one linear
    with pytest.raises(ConfigError, match=r"model.pooling=mean is for bert models; .* is a "
                                          r"roberta: use model.pooling=cls"):
        build_network({**cfg, "name_or_path": str(tmp_path), "config_overrides": {}},
                      "classification", ["a", "b"])


def test_a_normalized_mean_is_a_unit_vector_as_the_checkpoint_says(make_cfg, tmp_path):
    """model.normalize=true: the head reads the mean as a unit vector; auto: as the checkpoint's
    sentence-transformers modules.json says (a Normalize module), so all-MiniLM-L6-v2 normalizes
    and a plain BERT folder does not."""
    import json

    from bertlab.models.network import choose_normalize

    cfg = dict(make_cfg("model.pooling=mean", "model.normalize=true").model)
    net = build_network(cfg, "classification", ["a", "b"]).eval()
    b, task = batch(), task_of("classification")
    hidden = net.base_model(**b).last_hidden_state
    mask = b["attention_mask"].unsqueeze(-1).float()
    mean = (hidden * mask).sum(1) / mask.sum(1)
    expected = net.classifier(mean / mean.norm(dim=-1, keepdim=True))
    assert torch.allclose(logits(net, task, **b), expected, atol=1e-5)
    assert not torch.allclose(net.classifier(mean), expected, atol=1e-3)  # (it differs)
    auto = {**cfg, "normalize": "auto"}
    assert choose_normalize(auto, "cls")[0] is False
    assert choose_normalize(auto, "mean")[0] is False  # random weights (the tiny model)
    assert choose_normalize({**auto, "pretrained": True}, "mean")[0] is True  # MiniLM's folder
    assert choose_normalize({**cfg, "normalize": False}, "mean") == (False, "given")
    net.config.save_pretrained(tmp_path)  # a BERT folder: no modules.json
    assert choose_normalize({**auto, "pretrained": True, "name_or_path": str(tmp_path)}, "mean")[0] is False
    (tmp_path / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}]))
    assert choose_normalize({**auto, "pretrained": True, "name_or_path": str(tmp_path)}, "mean")[0] is True
    with pytest.raises(ConfigError, match=r"^model.normalize='yes' is not valid; use auto, true or false$"):
        choose_normalize({**cfg, "normalize": "yes"}, "mean")
