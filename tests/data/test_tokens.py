"""data/tokens.py: one path from text to token ids. The training cache, predict.py (every input
format), serve.py, the ONNX backend, explanations and the distillation teacher see the same ids
for the same text: single texts, pairs and windows."""
from __future__ import annotations

import pandas as pd
import pytest
import torch

from conftest import sentences
from helpers import table
from helpers import compose_tool
from helpers import trained


class Recorder:
    """A predictor that records the ids it is given (padding removed), then answers as the
    model it wraps."""

    def __init__(self, model) -> None:
        self.model, self.seen = model, []
        self.hparams, self.task = model.hparams, model.task

    def __call__(self, **batch) -> torch.Tensor:
        for ids, mask in zip(batch["input_ids"], batch["attention_mask"]):
            self.seen.append(ids[mask.bool()].tolist())
        return self.model(**batch)


@pytest.fixture(scope="module", params=["single", "pair", "windows"])
def run(request, tmp_path_factory):
    kind = request.param
    folder = tmp_path_factory.mktemp(f"tokens_{kind}")
    df = table(kind, 120, 0)
    df.to_json(folder / "train.jsonl", orient="records", lines=True)
    extra = {"pair": ["data.text_column=premise", "data.text_pair_column=hypothesis"],
             "windows": ["data.long_text=windows", "max_length=32"]}.get(kind, [])
    run_dir = trained(tmp_path_factory, "data=files", f"data.train_file={folder / 'train.jsonl'}",
                      f"data.test_file={folder / 'train.jsonl'}", *extra)
    return kind, run_dir, df.rename(columns={"premise": "text"})


def training_ids(run_dir) -> list[list[int]]:
    """The ids in the run's own tokenized cache for its test split (the training file here)."""
    from bertlab.data.datamodule import from_config
    from bertlab.cli.runs import run_config

    dm = from_config(run_config(run_dir))
    dm.setup("test")
    return [list(ids) for ids in dm.dataset["test"]["input_ids"]]


def test_every_entry_point_encodes_a_text_as_training_did(run, tmp_path):
    from bertlab.use.explain import explain_texts
    from bertlab.models.inference import load_predictor, predict_texts

    kind, run_dir, df = run
    expected = training_ids(run_dir)
    texts = list(df["text"])
    pairs = list(df["hypothesis"]) if kind == "pair" else None

    model, tokenizer = load_predictor(str(run_dir), None)
    recorder = Recorder(model)
    predict_texts(recorder, tokenizer, texts, pairs=pairs, batch_size=7)
    assert sorted(recorder.seen) == sorted(expected)  # (predict sorts its batches by length)

    from bertlab.use.serve import TextAPI  # the server's predict, over the same predictor
    api = TextAPI(str(run_dir), "torch", "32", None, None, False)
    api.setup("cpu")
    api.model = Recorder(api.model)
    api.predict([{"texts": texts, "pairs": pairs}])
    assert sorted(api.model.seen) == sorted(expected)

    from bertlab.use.export import export  # the ONNX backend: the export's own tokenizer folder
    export(compose_tool("export", f"run_dir={run_dir}", "format=onnx"))
    onnx, onnx_tokenizer = load_predictor(str(run_dir), None, "onnx")
    onnx = Recorder(onnx)
    predict_texts(onnx, onnx_tokenizer, texts, pairs=pairs)
    assert sorted(onnx.seen) == sorted(expected)

    if kind != "windows":  # an explanation reads the first window's tokens
        from bertlab.models.checkpoints import find_checkpoint, load_model

        full = load_model(find_checkpoint(str(run_dir)))
        (scores,) = explain_texts(full, tokenizer, texts[:1], [0], n_steps=2,
                                  pairs=pairs[:1] if pairs else None)
        assert [t for t, _ in scores] == tokenizer.convert_ids_to_tokens(expected[0])


@pytest.mark.parametrize("suffix", ["csv", "tsv", "json", "jsonl", "parquet", "txt"])
def test_every_input_format_gives_predict_the_same_texts(tmp_path, suffix):
    """predict.py's reader (data/inputs.py) gives the same texts from each format training reads,
    quotes, commas and tabs inside texts included."""
    from bertlab.data.inputs import text_rows

    texts = ['"a quoted" start', "commas, inside", "a tab\tinside" if suffix not in ("tsv", "txt")
             else "no tab", "plain"] + [t for t, _ in sentences(5)]
    df = pd.DataFrame({"text": texts, "label": range(len(texts))})
    path = tmp_path / f"in.{suffix}"
    if suffix == "csv":
        df.to_csv(path, index=False)
    elif suffix == "tsv":
        path.write_text("text\tlabel\n" + "".join(f"{t}\t{i}\n" for i, t in enumerate(texts)))
    elif suffix == "parquet":
        df.to_parquet(path)
    elif suffix == "txt":
        path.write_text("\n".join(texts) + "\n")
    else:
        df.to_json(path, orient="records", lines=suffix == "jsonl")
    assert [t for t, _ in text_rows(str(path), ["text"])] == texts


def test_encode_texts_is_what_the_tokenizer_gives(tmp_path_factory):
    """The fast path (the Rust tokenizer's encode_batch_fast) and the tokenizer's own call agree:
    ids, segment ids and what truncation cut."""
    from transformers import AutoTokenizer

    from bertlab.data.tokens import encode_texts

    tok = AutoTokenizer.from_pretrained(compose_tool("train", "model=tiny").model.tokenizer)
    texts = [t for t, _ in sentences(20)] + ["word " * 200, "x"]
    pairs = [f"second text {i}" for i in range(len(texts))]
    for second in (None, pairs):
        enc, cut = encode_texts(tok, texts, second, 16)
        theirs = tok(texts, second, truncation=True, max_length=16)
        assert enc["input_ids"] == theirs["input_ids"]
        if second:
            assert enc["token_type_ids"] == theirs["token_type_ids"]
        assert cut == [len(x) > 16 for x in tok(texts, second)["input_ids"]]
