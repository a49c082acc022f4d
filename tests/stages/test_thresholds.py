"""data.thresholds: multi-label decisions chosen on validation and used everywhere after."""
from __future__ import annotations

import json
import random

import pytest
import torch

from bertlab.errors import ConfigError
from bertlab.models.scoring import decide
from bertlab.stages.thresholds import macro_f1, one_for_all, per_label
from bertlab.training.train import train


def test_tuned_thresholds_find_the_known_best_cut():
    # label 0: positives score 0.30..0.39, negatives 0.00..0.19: any cut in (0.19, 0.30) is
    # perfect and the midpoint is 0.245; label 1: a perfect cut at 0.5 misses nothing either.
    pos0, neg0 = torch.linspace(0.30, 0.39, 10), torch.linspace(0.0, 0.19, 20)
    pos1, neg1 = torch.linspace(0.6, 0.9, 10), torch.linspace(0.1, 0.4, 20)
    scores = torch.stack([torch.cat([pos0, neg0]), torch.cat([pos1, neg1])], 1)
    target = torch.cat([torch.ones(10, 2), torch.zeros(20, 2)])
    t = per_label(scores, target)
    assert t[0] == pytest.approx(0.245, abs=1e-6)
    assert t[1] == pytest.approx(0.5, abs=1e-6)
    assert macro_f1(decide(scores, t), target) == 1.0
    assert macro_f1(decide(scores, 0.5), target) == 0.5  # 0.5 misses every positive of label 0


def test_tuned_thresholds_beat_every_other_cut_on_noisy_scores():
    g = torch.Generator().manual_seed(0)
    target = (torch.rand(400, 3, generator=g) < torch.tensor([0.1, 0.3, 0.6])).float()
    scores = (target * 0.3 + torch.rand(400, 3, generator=g) * 0.7).clamp(0, 1)
    t = per_label(scores, target)
    best = macro_f1(decide(scores, t), target)
    for cut in torch.linspace(0.01, 0.99, 99):
        for label in range(3):
            other = t.clone()
            other[label] = cut
            assert macro_f1(decide(scores, other), target) <= best + 1e-6
    assert one_for_all(scores, target).unique().numel() == 1
    assert macro_f1(decide(scores, one_for_all(scores, target)), target) <= best + 1e-6


def test_a_label_never_true_keeps_one_half():
    scores = torch.rand(50, 2)
    target = torch.zeros(50, 2)
    target[:10, 0] = 1
    assert per_label(scores, target)[1] == 0.5


def tagged(path, n: int = 240, seed: int = 0):
    """Multi-label rows: each tag's word in the text makes the tag true."""
    rnd = random.Random(seed)
    words = {"sports": "match", "money": "price", "tech": "phone"}
    rows = []
    for _ in range(n):
        tags = [t for t in words if rnd.random() < 0.4] or ["tech"]
        rows.append({"text": " ".join(["a note on"] + [words[t] for t in tags] + ["today"]),
                     "label": tags})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_a_multilabel_run_decides_with_its_thresholds_everywhere(make_cfg, tmp_path):
    from transformers import AutoTokenizer, pipeline

    from bertlab.models.checkpoints import find_checkpoint, load_network
    from bertlab.use.export import export
    from bertlab.models.onnx_network import OnnxNetwork
    from bertlab.models.inference import predict_texts, result_rows
    from helpers import compose_tool

    data = tagged(tmp_path / "tags.jsonl")
    run_dir = tmp_path / "run"
    train(make_cfg("data=files", f"data.train_file={data}", "max_epochs=3", "batch_size=16",
                   "lr=1e-3"))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    chosen = metrics["thresholds"]
    assert chosen["method"] == "tuned" and set(chosen["thresholds"]) == {"money", "sports", "tech"}
    for key in ("val/f1", "val/acc", "test/f1", "test/acc"):  # beside 0.5's
        assert key in chosen and key in chosen["at_0.5"]
    assert chosen["at_0.5"]["test/f1"] == pytest.approx(metrics["test/f1"], abs=1e-4)
    assert chosen["val/f1"] >= chosen["at_0.5"]["val/f1"]  # the best cut includes 0.5's
    saved = json.loads((run_dir / "thresholds.json").read_text())
    assert saved["checkpoint"] == "best.ckpt" and saved["thresholds"] == chosen["thresholds"]

    model = load_network(find_checkpoint(str(run_dir)))
    t = list(chosen["thresholds"].values())
    assert model.thresholds == t
    tok = AutoTokenizer.from_pretrained(model.hparams.model["tokenizer"])
    texts = ["a note on match today", "a note on price phone today", "a note on today",
             "match price phone", "nothing at all here"]
    scores = predict_texts(model, tok, texts)
    ours = [row["labels"] for row in result_rows(model, texts, scores)]
    labels = list(model.hparams.labels)
    assert ours == [[n for n, p, c in zip(labels, s, t) if p > c] for s in scores.tolist()]
    assert [r["labels"] for r in result_rows(model, texts, scores, 0.5)] == \
        [[n for n, p in zip(labels, s) if p > 0.5] for s in scores.tolist()]

    out = tmp_path / "hf"  # the exported folder decides the same in pipeline(), sigmoid > 0.5
    export(compose_tool("export", f"run_dir={run_dir}", f"out={out}"))
    clf = pipeline("text-classification", model=str(out), device="cpu")
    theirs = clf(texts, top_k=None, function_to_apply="sigmoid")
    assert [sorted(s["label"] for s in row if s["score"] > 0.5) for row in theirs] == \
        [sorted(labels_) for labels_ in ours]
    assert json.loads((out / "config.json").read_text())["bertlab_thresholds"] == chosen["thresholds"]

    export(compose_tool("export", f"run_dir={run_dir}", "format=onnx"))  # and the ONNX model
    onnx = OnnxNetwork(run_dir / "onnx")
    assert onnx.thresholds == t
    assert [r["labels"] for r in result_rows(onnx, texts, predict_texts(onnx, tok, texts))] == ours


def test_eval_reports_the_runs_thresholds_beside_one_half(make_cfg, tmp_path):
    from bertlab.use.evaluate import evaluate
    from helpers import compose_tool

    data = tagged(tmp_path / "tags.jsonl", n=120)
    run_dir = tmp_path / "run"
    train(make_cfg("data=files", f"data.train_file={data}", "batch_size=16", "data.thresholds=0.3"))
    chosen = json.loads((run_dir / "metrics.json").read_text())["thresholds"]
    assert chosen["method"] == "fixed" and set(chosen["thresholds"].values()) == {0.3}
    found = evaluate(compose_tool("eval", f"run_dir={run_dir}", f"output_dir={tmp_path / 'e'}"))
    assert found["thresholds"]["test/f1"] == pytest.approx(chosen["test/f1"], abs=1e-4)
    assert found["test/f1"] == pytest.approx(chosen["at_0.5"]["test/f1"], abs=1e-4)


@pytest.mark.parametrize("overrides, words", [
    (["data.thresholds=tuned"], "data.thresholds=tuned sets multi-label decisions; this run's "
                                "task is classification"),
    (["data.thresholds=1.5"], "data.thresholds=1.5 is not valid; use tuned, global or a probability"),
    (["data.thresholds=best"], "data.thresholds='best' is not valid"),
])
def test_threshold_mistakes_are_refused_before_training(make_cfg, tmp_path, overrides, words):
    cfg = make_cfg("data.max_samples=160", *overrides)
    with pytest.raises(ConfigError, match=words):
        train(cfg)
    assert not (tmp_path / "run" / "checkpoints").exists()
