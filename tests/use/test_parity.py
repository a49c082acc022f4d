"""One answer for one input: predict.py (every input format, both backends), the server's predict,
eval.py and the Hugging Face export agree, for a single-text, a pair, a multi-label and a
windowed run."""
from __future__ import annotations

import json

import pytest
import torch

from helpers import compose_tool
from helpers import predictions, table, trained

KINDS = ("single", "pair", "multilabel", "windows")


@pytest.fixture(scope="module", params=KINDS)
def run(request, tmp_path_factory):
    """(kind, run folder with its ONNX export, a labelled input in every format training reads)."""
    from bertlab.use.export import export

    kind = request.param
    folder = tmp_path_factory.mktemp(kind)
    table(kind, 120, 0).to_json(folder / "train.jsonl", orient="records", lines=True)
    extra = {"pair": ["data.text_column=premise", "data.text_pair_column=hypothesis"],
             "windows": ["data.long_text=windows", "max_length=32"]}.get(kind, [])
    run_dir = trained(tmp_path_factory, "data=files", f"data.train_file={folder / 'train.jsonl'}",
                      "lr=3e-3", *extra)
    export(compose_tool("export", f"run_dir={run_dir}", "format=onnx"))
    df = table(kind, 12, 1)
    inputs = {}
    for suffix in ("csv", "tsv", "jsonl", "json", "parquet"):
        path = folder / f"in.{suffix}"
        flat = df.assign(label=df["label"].map("|".join)) if kind == "multilabel" and suffix in (
            "csv", "tsv") else df
        if suffix in ("csv", "tsv"):
            flat.to_csv(path, index=False, sep="," if suffix == "csv" else "\t")
        elif suffix == "parquet":
            df.to_parquet(path)
        else:
            df.to_json(path, orient="records", lines=suffix == "jsonl")
        inputs[suffix] = path
    if kind == "pair":
        df = df.rename(columns={"premise": "text"})  # (what the tests below compare)
    else:
        (folder / "in.txt").write_text("\n".join(df["text"]) + "\n")
        inputs["txt"] = folder / "in.txt"
    return kind, run_dir, inputs, df


def predicted(run_dir, source, out, *args) -> list[dict]:
    from bertlab.use.predict import predict

    predict(compose_tool("predict", f"run_dir={run_dir}", f"input={source}", f"output={out}",
                         "precision=32", *args))
    return predictions(out)


def scores(rows: list[dict]) -> torch.Tensor:
    return torch.tensor([[v for k, v in r.items() if k.startswith("p_")] for r in rows])


def test_every_command_gives_the_same_answer(run, tmp_path):
    from bertlab.use.serve import TextAPI

    kind, run_dir, inputs, df = run
    first, *others = inputs.items()
    expected = predicted(run_dir, first[1], tmp_path / "first.jsonl")
    assert [r["text"] for r in expected] == list(df["text"])
    if kind == "pair":  # the pair is read, and shown beside its text
        assert [r["text_pair"] for r in expected] == list(df["hypothesis"])
    for suffix, path in others:  # every format training reads: the same rows, the same answers
        got = predicted(run_dir, path, tmp_path / f"{suffix}.jsonl")
        assert [r["text"] for r in got] == [r["text"] for r in expected], suffix
        assert torch.equal(scores(got), scores(expected)), suffix

    onnx = predicted(run_dir, first[1], tmp_path / "onnx.jsonl", "backend=onnx")
    assert (scores(onnx) - scores(expected)).abs().max() < 1e-4

    api = TextAPI(str(run_dir), "torch", "32", None, None, False)  # the server's predict
    api.setup("cpu")
    pairs = list(df["hypothesis"]) if kind == "pair" else None
    (served,) = api.predict([{"texts": list(df["text"]), "pairs": pairs}])
    assert (scores(served) - scores(expected)).abs().max() < 1e-5
    key = "labels" if kind == "multilabel" else "label"
    assert [r[key] for r in served] == [r[key] for r in expected]
    if kind == "windows":
        assert [r["windows"] for r in served] == [r["windows"] for r in expected]
        assert min(r["windows"] for r in expected) > 1  # really read in windows


def test_eval_scores_what_predict_answers(run, tmp_path):
    """eval.py file= on the same labelled file: its accuracy is predict's labels against the
    file's (multi-label: exact matches are not what eval reports; its F1 is tested elsewhere)."""
    from bertlab.use.evaluate import evaluate

    kind, run_dir, inputs, df = run
    if kind == "multilabel":
        pytest.skip("eval reports macro-F1 for multi-label runs")
    rows = predicted(run_dir, inputs["csv"], tmp_path / "p.jsonl")
    accuracy = sum(r["label"] == y for r, y in zip(rows, df["label"])) / len(df)
    metrics = evaluate(compose_tool("eval", f"run_dir={run_dir}", f"file={inputs['csv']}",
                                    f"output_dir={tmp_path / 'e'}"))
    assert metrics["rows"] == len(df)
    assert metrics["test/acc"] == pytest.approx(accuracy, abs=1e-6)


def test_the_exported_model_answers_the_same(run, tmp_path):
    """The Hugging Face folder (export.py format=hf) in plain transformers: the same scores for
    texts within max_length (a windowed run's export truncates, as its README says); for a
    multi-label run, the same labels."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from bertlab.use.export import export

    kind, run_dir, inputs, df = run
    if kind == "windows":
        pytest.skip("a windowed run's export reads the first window; its pooling is predict's")
    rows = predicted(run_dir, inputs["jsonl"], tmp_path / "p.jsonl")
    export(compose_tool("export", f"run_dir={run_dir}", f"out={tmp_path / 'hf'}"))
    tok = AutoTokenizer.from_pretrained(tmp_path / "hf")
    hf = AutoModelForSequenceClassification.from_pretrained(tmp_path / "hf").eval()
    pairs = list(df["hypothesis"]) if kind == "pair" else None
    with torch.no_grad():
        logits = hf(**tok(list(df["text"]), pairs, padding=True, return_tensors="pt")).logits
    if kind == "multilabel":  # its biases carry the run's thresholds: sigmoid > 0.5 decides
        names = hf.config.id2label
        assert [[names[i] for i, p in enumerate(row) if p > 0.5] for row in logits.sigmoid()] == [
            r["labels"] for r in rows]
    else:
        assert (logits.softmax(-1) - scores(rows)).abs().max() < 1e-4
    assert json.loads((tmp_path / "hf" / "config.json").read_text())["id2label"]
