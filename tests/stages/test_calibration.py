"""calibrate=true: temperature scaling fitted on validation, used by predict and the exports."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from bertlab.stages.calibration import ece, fit_temperature, nll
from bertlab.errors import ConfigError
from bertlab.training.train import train

FAST = ["data.max_samples=160", "batch_size=16"]


def sampled(n: int = 4000, classes: int = 3, seed: int = 0):
    """Logits whose softmax is the true distribution of the labels drawn from it."""
    g = torch.Generator().manual_seed(seed)
    true = torch.randn(n, classes, generator=g) * 2
    target = torch.multinomial(true.softmax(-1), 1, generator=g).squeeze(1)
    return true, target


@pytest.mark.parametrize("scale", [4.0, 0.3])  # over- and under-confident
def test_temperature_scaling_undoes_a_known_miscalibration(scale):
    true, target = sampled()
    t = fit_temperature(true * scale, target, multi_hot=False)
    assert t == pytest.approx(scale, rel=0.15)  # logits * scale / T = the true logits
    assert nll(true * scale / t, target, False) < nll(true * scale, target, False)
    assert ece(true * scale / t, target, False) < ece(true * scale, target, False)


def test_multilabel_temperature_lowers_the_nll():
    g = torch.Generator().manual_seed(1)
    true = torch.randn(3000, 4, generator=g)
    target = torch.bernoulli(true.sigmoid(), generator=g)
    t = fit_temperature(true * 5, target, multi_hot=True)
    assert t == pytest.approx(5, rel=0.2)
    assert F.binary_cross_entropy_with_logits(true * 5 / t, target) < \
        F.binary_cross_entropy_with_logits(true * 5, target)


def test_a_calibrated_run_gives_calibrated_probabilities_everywhere(make_cfg, tmp_path):
    from transformers import AutoTokenizer, pipeline

    from bertlab.models.checkpoints import find_checkpoint, load_network
    from bertlab.use.export import export
    from bertlab.models.inference import predict_texts
    from helpers import compose_tool

    run_dir = tmp_path / "run"
    train(make_cfg(*FAST, "max_epochs=2", "calibrate=true"))
    report = json.loads((run_dir / "metrics.json").read_text())["calibration"]
    assert report["temperature"] > 0
    for split in ("val", "test"):
        assert {f"{split}/ece_before", f"{split}/ece_after", f"{split}/nll_before",
                f"{split}/nll_after"} <= set(report)
    assert report["val/nll_after"] <= report["val/nll_before"] + 1e-6  # fitted to lower it
    saved = json.loads((run_dir / "calibration.json").read_text())
    assert saved["checkpoint"] == "best.ckpt" and saved["temperature"] == report["temperature"]

    model = load_network(find_checkpoint(str(run_dir)))
    assert model.temperature == report["temperature"]
    tok = AutoTokenizer.from_pretrained(model.hparams.model["tokenizer"])
    texts = ["what a great day", "this is awful", "the car drives itself"]
    calibrated = predict_texts(model, tok, texts)
    model.temperature = 1.0
    raw = predict_texts(model, tok, texts)
    assert torch.equal(calibrated.argmax(-1), raw.argmax(-1))  # decisions never change
    enc = tok(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(**enc)
    assert torch.allclose(calibrated, (logits / report["temperature"]).softmax(-1), atol=1e-5)

    out = tmp_path / "hf"  # the export gives the calibrated probabilities in pipeline()
    export(compose_tool("export", f"run_dir={run_dir}", f"out={out}"))
    theirs = pipeline("text-classification", model=str(out), device="cpu")(texts, top_k=None)
    labels = list(model.hparams.labels)
    for row, scores in zip(calibrated, theirs):
        for s in scores:
            assert s["score"] == pytest.approx(float(row[labels.index(s["label"])]), abs=1e-4)


@pytest.mark.parametrize("overrides, words", [
    (["data=valence"], "a regression run has none"),
    (["data.val_size=0"], "there is no validation split"),
    (["calibrate=maybe"], "calibrate='maybe' is not valid"),
])
def test_calibrate_mistakes_are_refused_before_training(make_cfg, tmp_path, overrides, words):
    cfg = make_cfg(*FAST, "calibrate=true", *overrides)
    with pytest.raises(ConfigError, match=words):
        train(cfg)
    assert not (tmp_path / "run" / "checkpoints").exists()
