"""data.long_text=windows: long texts read in overlapping windows, pooled per document."""
from __future__ import annotations

import json
import random
import re

import pytest
import torch
from transformers import AutoTokenizer

from bertlab.data.windows import encode, first_of_each, pool
from bertlab.errors import ConfigError, user_error
from bertlab.training.train import train

FILLER = ["the", "film", "plot", "cast", "ending", "music", "story", "script", "was", "and", "too",
          "then", "of", "a"]
NEEDLES = {"positive": ["great", "superb"], "negative": ["awful", "dull"]}


@pytest.fixture(scope="module")
def tokenizer():
    from helpers import compose_tool

    return AutoTokenizer.from_pretrained(compose_tool("train", "model=tiny").model.tokenizer)


def test_windows_cover_a_long_text_with_the_stride_shared(tokenizer):
    text = " ".join(f"word{i}" for i in range(60))
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    enc, cut = encode(tokenizer, [text, "short"], None, max_length=24, stride=6)
    assert cut == 0 and enc["doc"][-1] == 1 and enc["window"][-1] == 0
    inner = [w[1:-1] for w, d in zip(enc["input_ids"], enc["doc"]) if d == 0]  # without CLS/SEP
    assert all(len(w) <= 22 for w in inner) and inner[0] == ids[:22]
    for before, after in zip(inner, inner[1:]):
        assert before[-6:] == after[:6]  # consecutive windows share `stride` tokens
    joined = inner[0] + [t for w in inner[1:] for t in w[6:]]
    assert joined == ids  # every token is read, in order
    assert enc["window"][:len(inner)] == list(range(len(inner)))


def test_pairs_window_the_second_text_and_keep_the_first_whole(tokenizer):
    question = "what is the film about"
    enc, cut = encode(tokenizer, [question, " ".join(["long"] * 40)],
                      [" ".join(f"word{i}" for i in range(50)), "a second text"], 32, 4)
    first = tokenizer(question, add_special_tokens=False)["input_ids"]
    windows = [w for w, d in zip(enc["input_ids"], enc["doc"]) if d == 0]
    assert len(windows) > 1 and all(w[1:1 + len(first)] == first for w in windows)
    assert enc["doc"].count(1) == 1 and cut == 1  # a first text too long: truncated, counted


def test_pooling_takes_the_mean_or_max_per_document():
    logits = torch.tensor([[1.0, 0.0], [3.0, 2.0], [-1.0, 4.0], [0.5, 0.5]])
    doc = torch.tensor([0, 0, 0, 1])
    mean, docs = pool(logits, doc, "mean")
    assert docs.tolist() == [0, 1] and torch.allclose(mean, torch.tensor([[1.0, 2.0], [0.5, 0.5]]))
    assert torch.equal(pool(logits, doc, "max")[0], torch.tensor([[3.0, 4.0], [0.5, 0.5]]))
    assert torch.equal(first_of_each(torch.tensor([1, 1, 1, 0]), doc), torch.tensor([1, 0]))


def needles(path, n: int = 300, seed: int = 0):
    """Documents of neutral filler whose label is one word planted past token 45."""
    rnd = random.Random(seed)
    rows = []
    for i in range(n):
        label = ["negative", "positive"][i % 2]
        words = [rnd.choice(FILLER) for _ in range(70)]
        words.insert(rnd.randint(45, 65), rnd.choice(NEEDLES[label]))
        rows.append({"text": " ".join(words), "label": label})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_windows_find_a_needle_past_max_length_that_truncation_misses(make_cfg, tmp_path):
    from bertlab.models.scoring import collect
    from bertlab.models.checkpoints import find_checkpoint, load_model, load_network
    from bertlab.data import tokens
    from bertlab.data.datamodule import from_config
    from bertlab.use.evaluate import evaluate
    from bertlab.use.export import export
    from bertlab.models.inference import predict_texts
    from helpers import compose_tool

    data = needles(tmp_path / "needles.jsonl")
    common = ["data=files", f"data.train_file={data}", "max_length=32", "max_epochs=3", "lr=3e-3",
              "batch_size=16"]
    found = {}
    for mode in ("windows", "truncate"):
        train(make_cfg(*common, f"data.long_text={mode}", run_dir=tmp_path / mode))
        found[mode] = json.loads((tmp_path / mode / "metrics.json").read_text())
    assert found["truncate"]["test/acc"] <= 0.65  # the needle is never seen: chance
    assert found["windows"]["test/acc"] >= 0.8
    data_report = found["windows"]["data"]
    assert data_report["rows"] == {"train": 240, "validation": 30, "test": 30}  # documents
    assert data_report["windows"]["test"]["documents"] == 30
    assert data_report["windows"]["test"]["mean_per_document"] == 3.0
    assert "truncated" not in data_report and found["truncate"]["data"]["truncated"]["test"] == 30

    run = tmp_path / "windows"  # per-document metrics: each document counted once
    model = load_model(find_checkpoint(str(run)))
    cfg = make_cfg(*common, "data.long_text=windows")
    dm = from_config(cfg)
    assert tokens.cached(dm.cache_folder)  # the run's windows, cached: read, not tokenized again
    truncating = from_config(make_cfg(*common))
    assert truncating.cache_folder != dm.cache_folder and tokens.cached(truncating.cache_folder)
    dm.setup("test")
    scores, target = collect(model, dm.eval_dataloader("test"))
    assert len(scores) == 30 and len(dm.dataset["test"]) == 90
    acc = float((scores.argmax(-1) == target).float().mean())
    assert acc == pytest.approx(found["windows"]["test/acc"], abs=1e-6)
    evaluated = evaluate(compose_tool("eval", f"run_dir={run}", f"output_dir={tmp_path / 'e'}"))
    assert evaluated["rows"] == 30
    assert evaluated["test/acc"] == pytest.approx(acc, abs=1e-6)

    net = load_network(find_checkpoint(str(run)))  # predict reads the same windows
    texts = dm.texts("test")
    counts = []
    probs = predict_texts(net, dm.tokenizer, texts, windows=counts)
    assert counts == [3] * 30
    labels = list(net.hparams.labels)
    expected = [labels[i] for i in target.tolist()]
    ours = [labels[i] for i in probs.argmax(-1).tolist()]
    assert sum(a == b for a, b in zip(ours, expected)) / 30 == pytest.approx(acc, abs=1e-6)

    out = tmp_path / "hf"  # the export says how it was trained
    export(compose_tool("export", f"run_dir={run}", f"out={out}"))
    assert json.loads((out / "config.json").read_text())["bertlab_windows"] == {
        "max_length": 32, "stride": 8, "pool": "mean"}
    assert "truncates a longer text to its first window" in (out / "README.md").read_text()


def test_predict_reports_each_texts_windows(tmp_path, make_cfg):
    from bertlab.use.export import export
    from bertlab.models.onnx_network import OnnxNetwork
    from bertlab.use.predict import predict
    from bertlab.models.inference import predict_texts
    from bertlab.use.serve import TextAPI
    from helpers import compose_tool

    data = needles(tmp_path / "needles.jsonl", n=60)
    train(make_cfg("data=files", f"data.train_file={data}", "max_length=32", "batch_size=16",
                   "data.long_text=windows", "data.window_pool=max", "data.window_stride=0"))
    (tmp_path / "in.txt").write_text("a short text\n" + " ".join(["film"] * 100) + "\n")
    out = tmp_path / "p.jsonl"
    predict(compose_tool("predict", f"run_dir={tmp_path / 'run'}", f"input={tmp_path / 'in.txt'}",
                         f"output={out}", "precision=32"))
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [row["windows"] for row in rows] == [1, 4]  # 100 tokens in windows of 30
    texts = (tmp_path / "in.txt").read_text().splitlines()

    api = TextAPI(str(tmp_path / "run"), "torch", "32", None, None, False)  # the server's predict
    api.setup("cpu")
    (served,) = api.predict([{"texts": texts, "pairs": None}])
    assert [r["windows"] for r in served] == [1, 4]
    assert [r["label"] for r in served] == [r["label"] for r in rows]

    export(compose_tool("export", f"run_dir={tmp_path / 'run'}", "format=onnx"))
    meta = json.loads((tmp_path / "run" / "onnx" / "bertlab.json").read_text())
    assert meta["windows"] == {"stride": 0, "pool": "max"}
    onnx = OnnxNetwork(tmp_path / "run" / "onnx")
    counts = []
    probs = predict_texts(onnx, api.tokenizer, texts, windows=counts)
    assert counts == [1, 4]
    expected = torch.tensor([[r[f"p_{n}"] for n in onnx.hparams.labels] for r in rows])
    assert torch.allclose(probs, expected, atol=1e-4)


@pytest.mark.parametrize("overrides, words", [
    (["data.long_text=windows", "data.window_stride=128"],
     "data.window_stride=128 is not valid with max_length=128: .* use 0 to 125"),
    (["data.long_text=windows", "data.window_stride=-1"], "data.window_stride=-1 is not valid"),
    (["data.long_text=chunks"], "data.long_text='chunks' is not valid; use truncate or windows"),
    (["data.long_text=windows", "data.window_pool=vote"], "data.window_pool='vote' is not valid"),
    (["data.window_stride=16"], "data.window_stride=16 is for data.long_text=windows"),
    (["data=valence", "data.long_text=windows", "data.window_pool=max"],
     "data.window_pool=max is for class scores; a regression document's value is the mean"),
])
def test_window_mistakes_are_refused_before_training(make_cfg, tmp_path, overrides, words):
    cfg = make_cfg("data.max_samples=160", *overrides)
    with pytest.raises(Exception) as raised:  # (Hydra wraps what the data module raises)
        train(cfg)
    err = user_error(raised.value)
    assert isinstance(err, ConfigError) and re.search(words, str(err)), raised.value
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_regression_pools_windows_by_mean(make_cfg, tmp_path, caplog):
    import logging

    with caplog.at_level(logging.INFO):
        train(make_cfg("data=valence", "data.max_samples=160", "max_length=3", "batch_size=16",
                       "data.long_text=windows", "data.window_stride=0"))
    assert "a document's value is the mean of its windows' values" in caplog.text
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["data"]["windows"]["train"]["windows"] > metrics["data"]["rows"]["train"]
    assert "test/pearson" in metrics
