"""model.peft=lora: LoRA adapters (peft) train instead of the encoder; exports merged or alone."""
from __future__ import annotations

import json
import re

import pytest
import torch

from bertlab.errors import ConfigError, user_error
from bertlab.training.train import train
from conftest import stopped_and_resumed

FAST = ["data.max_samples=160", "batch_size=16", "lr=1e-3"]


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_lora_trains_adapters_and_head_only_and_exports_the_same_model(make_cfg, tmp_path, pooling):
    from peft import PeftModel
    from transformers import AutoTokenizer, pipeline

    from bertlab.models.checkpoints import find_checkpoint, load_model, load_network
    from bertlab.use.export import export
    from bertlab.models.inference import predict_texts
    from helpers import compose_tool

    run = tmp_path / "run"
    train(make_cfg(*FAST, "model.peft=lora", "model.lora.r=4", f"model.pooling={pooling}"))
    metrics = json.loads((run / "metrics.json").read_text())
    params = metrics["parameters"]
    assert params["trainable_at_start"] < params["total"] / 2
    model = load_model(find_checkpoint(str(run)))
    trainable = [n for n, p in model.net.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n or "modules_to_save" in n for n in trainable)
    assert any("classifier.modules_to_save" in n for n in trainable)  # the head trains fully
    assert model.net.peft_config["default"].r == 4

    net = load_network(find_checkpoint(str(run)))  # predict: adapters merged into the weights
    assert not any("lora_" in n for n, _ in net.named_parameters())
    tok = AutoTokenizer.from_pretrained(net.hparams.model["tokenizer"])
    texts = ["the film was great", "an awful plot and a dull cast", "music"]
    ours = predict_texts(net, tok, texts)
    enc = tok(texts, padding=True, return_tensors="pt")
    with torch.no_grad():  # the same as the unmerged LoRA network
        assert torch.allclose(ours, model(**enc).softmax(-1), atol=1e-5)

    out = tmp_path / "hf"  # merged: a plain Hugging Face folder
    export(compose_tool("export", f"run_dir={run}", f"out={out}"))
    assert not (out / "adapter_config.json").exists()
    theirs = pipeline("text-classification", model=str(out), device="cpu",
                      trust_remote_code=True)(texts, top_k=None)  # (pooling=mean: our head's code)
    labels = list(net.hparams.labels)
    for row, scores in zip(ours, theirs):
        for s in scores:
            assert s["score"] == pytest.approx(float(row[labels.index(s["label"])]), abs=1e-4)

    adapter = tmp_path / "adapter"  # the adapter alone, which peft puts on the base model
    if pooling == "mean":  # peft's base would read [CLS]: refused, not wrong
        with pytest.raises(ConfigError, match=r"adapter_only=true: .*model.pooling=mean"):
            export(compose_tool("export", f"run_dir={run}", f"out={adapter}", "adapter_only=true"))
        assert not adapter.exists()
        return
    export(compose_tool("export", f"run_dir={run}", f"out={adapter}", "adapter_only=true"))
    assert (adapter / "adapter_config.json").is_file()
    assert (adapter / "adapter_model.safetensors").stat().st_size < \
        (out / "model.safetensors").stat().st_size / 2
    loaded = PeftModel.from_pretrained(base_of(model, run), str(adapter)).eval()
    with torch.no_grad():
        assert torch.allclose(loaded(**enc).logits.softmax(-1), ours, atol=1e-5)


def base_of(model, run):
    """The run's base network without adapters, as peft's users have it: the tiny base is random,
    so its weights come from the run's checkpoint."""
    from bertlab.models.checkpoints import find_checkpoint
    from bertlab.models.network import build_network

    base = build_network({**model.hparams.model, "peft": None, "pretrained": False},
                         model.hparams.task, list(model.hparams.labels))
    state = torch.load(find_checkpoint(str(run)), weights_only=True)["state_dict"]
    prefix = "net.base_model.model."
    weights = {k[len(prefix):].replace(".base_layer.", ".").replace(".original_module.", "."): v
               for k, v in state.items()
               if k.startswith(prefix) and "lora_" not in k and "modules_to_save" not in k}
    assert not set(base.state_dict()) - set(weights)  # every base weight, as it was trained on
    base.load_state_dict(weights)
    return base


def test_a_regression_adapter_predicts_in_the_labels_units(make_cfg, tmp_path):
    """The head learns the standardized target; the adapter alone carries the scale in its head."""
    from peft import PeftModel
    from transformers import AutoTokenizer

    from bertlab.models.checkpoints import find_checkpoint, load_model, load_network
    from bertlab.use.export import export
    from bertlab.models.inference import predict_texts
    from helpers import compose_tool

    run = tmp_path / "run"
    train(make_cfg(*FAST, "data=valence", "model.peft=lora", "model.lora.r=4"))
    model = load_model(find_checkpoint(str(run)))
    assert model.hparams.target_scale[1] > 1  # valence: -4..4, not unit-scaled
    net = load_network(find_checkpoint(str(run)))
    tok = AutoTokenizer.from_pretrained(net.hparams.model["tokenizer"])
    texts = ["good", "horrible", ":)"]
    ours = predict_texts(net, tok, texts)
    export(compose_tool("export", f"run_dir={run}", f"out={tmp_path / 'a'}", "adapter_only=true"))
    loaded = PeftModel.from_pretrained(base_of(model, run), str(tmp_path / "a")).eval()
    with torch.no_grad():
        theirs = loaded(**tok(texts, padding=True, return_tensors="pt")).logits.squeeze(-1)
    assert torch.allclose(theirs, ours.squeeze(-1), atol=1e-4), (theirs, ours)


@pytest.mark.parametrize("overrides, words", [
    (["model.peft=qlora"], r"model.peft='qlora' is not valid; use lora"),
    (["model.peft=lora", "model.lora.target_modules=[attn]"],
     r"model.lora.target_modules=\['attn'\] match no layer of BertForSequenceClassification; its "
     r"linear layers are named: .*query"),
])
def test_lora_mistakes_are_one_line(make_cfg, tmp_path, overrides, words):
    with pytest.raises(Exception) as raised:
        train(make_cfg(*FAST, *overrides))
    err = user_error(raised.value)
    assert isinstance(err, ConfigError) and re.search(words, str(err)), raised.value
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_adapter_only_needs_a_lora_run_and_format_hf(make_cfg, tmp_path):
    from bertlab.use.export import export
    from helpers import compose_tool

    train(make_cfg(*FAST))
    run = tmp_path / "run"
    with pytest.raises(ConfigError, match="has no adapters"):
        export(compose_tool("export", f"run_dir={run}", f"out={tmp_path / 'a'}", "adapter_only=true"))
    with pytest.raises(ConfigError, match="adapter_only=true writes a peft adapter folder"):
        export(compose_tool("export", f"run_dir={run}", "format=onnx", "adapter_only=true"))
    assert not (tmp_path / "a").exists() and not (run / "onnx").exists()


def test_a_lora_run_resumes_to_the_same_metrics(make_cfg, tmp_path):
    """A LoRA run stopped after its first epoch and continued from last.ckpt (adapters, head,
    optimizer, RNG and data position) ends where an uninterrupted run does."""
    expected, got = stopped_and_resumed(make_cfg, tmp_path, [
        "data.max_samples=200", "batch_size=16", "lr=2e-3", "model.peft=lora", "scheduler=constant",
        "trainer.deterministic=true"])
    for key in ("val/loss", "val/acc", "test/loss", "test/acc"):
        assert got[key] == pytest.approx(expected[key], abs=1e-6), key


def test_one_target_module_is_a_name_and_freezing_keeps_the_adapters(make_cfg):
    """`model.lora.target_modules=query` adapts the query layers (it was split into letters);
    model.freeze_encoder=true beside peft leaves the adapters trainable (it froze them too)."""
    from bertlab.models.classifier import TextClassifier

    def trainable(*overrides):
        cfg = make_cfg(*FAST, "model.peft=lora", *overrides)
        model = TextClassifier(model=dict(cfg.model), task="classification", labels=["a", "b"],
                               loss=dict(cfg.loss), optimizer={}, scheduler={})
        return {n for n, p in model.net.named_parameters() if p.requires_grad}

    query = trainable("model.lora.target_modules=query")
    assert query and all("query" in n or "modules_to_save" in n for n in query)
    assert trainable("model.freeze_encoder=true") == trainable()
    assert trainable("model.freeze_layers=1") == trainable()


def test_a_lora_key_without_peft_is_one_line(tmp_path):
    import subprocess
    import sys

    from conftest import ROOT

    r = subprocess.run([sys.executable, str(ROOT / "train.py"), "model=tiny", "model.lora.r=16",
                        f"hydra.run.dir={tmp_path / 'run'}"], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert r.stderr.strip().splitlines()[-1] == (
        "error: model.lora.r=16 applies to LoRA adapters, and model.peft is null; add "
        "model.peft=lora (or leave model.lora.r out)")
    assert not (tmp_path / "run").exists()
