"""Using a trained run: eval.py agrees with training, predict.py on every input kind, bad input."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from bertlab.errors import BertlabError
from conftest import CONF, sentences
from helpers import assert_quiet, cold_caches, evaluate, predictions, tool, trained


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return trained(tmp_path_factory)


def test_eval_agrees_with_training(run_dir, tmp_path):
    trained_metrics = json.loads((run_dir / "metrics.json").read_text())
    test = evaluate(run_dir, out=tmp_path / "t")
    val = evaluate(run_dir, "split=validation", out=tmp_path / "v")
    for key in ("test/loss", "test/acc", "test/f1"):
        assert test[key] == pytest.approx(trained_metrics[key], abs=1e-4)
    for key in ("val/loss", "val/acc", "val/f1"):
        assert val[key.replace("val/", "validation/")] == pytest.approx(trained_metrics[key],
                                                                         abs=1e-4)
    assert json.loads((tmp_path / "t" / "metrics.json").read_text())["rows"] == 16


def test_eval_on_a_new_file(run_dir, tmp_path):
    import pandas as pd

    path = tmp_path / "more.csv"
    pd.DataFrame({"text": ["I love it", "I hate it", "it is a car"],
                  "sentiment": ["positive", "negative", "neutral"]}).to_csv(path, index=False)
    metrics = evaluate(run_dir, f"file={path}", out=tmp_path / "f")
    assert metrics["rows"] == 3 and 0 <= metrics["test/acc"] <= 1


def test_eval_on_a_semicolon_file_names_its_own_read_kwargs(run_dir, tmp_path):
    path = tmp_path / "semi.csv"
    path.write_text("text;sentiment\nI love it;positive\nI hate it;negative\n")
    with pytest.raises(BertlabError, match=r"^text_column='text' is not a column of the test data; "
                       r"its columns are: text;sentiment; separated by ';'\? set "
                       r"read_kwargs=\{sep: ';'\}$"):  # eval.py's key, not train's data.read_kwargs
        evaluate(run_dir, f"file={path}", out=tmp_path / "f")
    metrics = evaluate(run_dir, f"file={path}", "read_kwargs={sep: ';'}", out=tmp_path / "g")
    assert metrics["rows"] == 2


def test_eval_cli_writes_inside_the_run(run_dir, tmp_path):
    r = tool("eval.py", f"run_dir={run_dir}", env=cold_caches(tmp_path))
    assert_quiet(r)  # (no library chatter: test_console.py)
    (out,) = list((run_dir / "eval").glob("*/metrics.json"))
    assert "test/acc" in json.loads(out.read_text())


def test_a_folder_named_like_a_sweep_job_is_a_run_dir_when_quoted(run_dir, tmp_path):
    """A sweep's job folders hold '=' (`0_lr=0.0001`): unquoted, Hydra's grammar error names the
    override and the quoting; quoted, eval.py works (it once failed on the eval folder it added)."""
    job = tmp_path / "0_lr=0.0001"
    job.symlink_to(run_dir, target_is_directory=True)
    r = tool("eval.py", f"run_dir={job}")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1] == (
        f"error: run_dir={job}: mismatched input '=' expecting <EOF>; a value that holds '=' "
        f"needs quotes: \"run_dir='{job}'\"")
    out = tmp_path / "eval=1"  # a quoted folder of its own: made as named, not with its quotes
    r = tool("eval.py", f"run_dir='{job}'", f"output_dir='{out}'")
    assert r.returncode == 0, r.stderr[-2000:]
    assert (out / "metrics.json").is_file()


def test_resuming_a_folder_that_holds_an_equals_sign(tmp_path):
    from bertlab.cli.entry import resume_argv

    job = tmp_path / "0_lr=0.0001"
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text("- lr=0.0001\n")
    for typed in (f"resume='{job}'", f"resume={job}"):  # quoted as Hydra wants, or as typed
        argv = resume_argv([typed])
        assert argv[:2] == ["lr=0.0001", f"hydra.run.dir='{job}'"] and f"resume='{job}'" in argv


def test_quoted_override_values():
    from bertlab.cli.overrides import override_value, quoted

    assert quoted("outputs/runs/2026-12-04_15-39-07-282489") == "outputs/runs/2026-12-04_15-39-07-282489"
    assert quoted("sweep/0_lr=0.0001") == "'sweep/0_lr=0.0001'"
    assert quoted("it's here") == "'it\\'s here'"
    assert override_value("hydra.run.dir='/x/a=b'") == "/x/a=b"  # Hydra's quotes removed
    assert override_value("run_dir=/x/a=b") == "/x/a=b"  # not Hydra syntax: as typed


def predict_in_process(*args):
    """predict.py's work without a new process (the command line itself: test_predict_each_input_kind
    reads stdin through it, and test_predict_bad_input_is_one_line checks its errors)."""
    from bertlab.use.predict import predict
    from helpers import compose_tool

    return predict(compose_tool("predict", *args))


@pytest.mark.parametrize("kind, encoding", [
    ("txt", "utf-8"), ("csv", "utf-8"), ("jsonl", "utf-8"), ("stdin", "utf-8"),
    ("txt", "utf-8-sig"), ("csv", "utf-8-sig"), ("txt", "utf-16"), ("csv", "utf-16")])
def test_predict_each_input_kind(run_dir, tmp_path, kind, encoding):
    """Each input kind; with a byte-order mark (Excel, Notepad) and as UTF-16 (Excel's "Unicode
    Text") too."""
    texts = ["what a great day", "this is awful", "the car drives itself"]
    stdin = None
    if kind == "txt":
        (tmp_path / "in.txt").write_text("\n".join(texts) + "\n", encoding=encoding)
    elif kind == "csv":
        (tmp_path / "in.csv").write_text("tweet,id\n" + "\n".join(
            f"{t},{i}" for i, t in enumerate(texts)), encoding=encoding)
    elif kind == "jsonl":
        (tmp_path / "in.jsonl").write_text("\n".join(json.dumps({"text": t}) for t in texts))
    else:
        stdin = "\n".join(texts)
    source = "-" if kind == "stdin" else str(tmp_path / f"in.{kind}")
    out = tmp_path / ("out.csv" if kind == "csv" else "out.jsonl")
    extra = ["text_column=tweet"] if kind == "csv" else []
    if kind == "stdin":  # the command line, reading stdin
        r = tool("predict.py", f"run_dir={run_dir}", f"input={source}", f"output={out}", *extra,
                 stdin=stdin)
        assert r.returncode == 0, r.stderr[-2000:]
    else:
        predict_in_process(f"run_dir={run_dir}", f"input={source}", f"output={out}", *extra)
    rows = predictions(out)
    assert [row["text"] for row in rows] == texts
    for row in rows:
        probs = [float(row[f"p_{n}"]) for n in ("negative", "neutral", "positive")]
        assert sum(probs) == pytest.approx(1, abs=1e-4)
        assert row["label"] == ["negative", "neutral", "positive"][probs.index(max(probs))]


def test_a_csv_text_over_several_lines_is_one_text_and_said(run_dir, tmp_path, capsys):
    """Read as training reads it: a quoted text over lines is one text (and said); a quote left
    open is the one line training gives, not the rest of the file as one text."""
    (tmp_path / "in.csv").write_text('text\n"a quoted text, then\nmore"\nfine\n')
    predict_in_process(f"run_dir={run_dir}", f"input={tmp_path / 'in.csv'}",
                       f"output={tmp_path / 'out.jsonl'}")
    assert [row["text"] for row in predictions(tmp_path / "out.jsonl")] == [
        "a quoted text, then\nmore", "fine"]  # the input's texts, as they were read
    assert "warning: 1 text(s) of input=" in capsys.readouterr().err
    (tmp_path / "open.csv").write_text('text\n"an open quote, then\nmore\nfine\n')
    with pytest.raises(BertlabError, match=r"a stray quote\? read_kwargs=\{quoting: 3\}"):
        predict_in_process(f"run_dir={run_dir}", f"input={tmp_path / 'open.csv'}",
                           f"output={tmp_path / 'open.jsonl'}")


@pytest.mark.parametrize("suffix", ["jsonl", "csv"])
def test_a_stopped_prediction_resumes_to_the_same_rows(run_dir, tmp_path, monkeypatch, suffix,
                                                       capsys):
    """Chunks of 8 texts; stopped in the third chunk, with half a row written past the last
    record (a kill mid-write): resume=true gives the bytes of an uninterrupted run."""
    from bertlab.models import inference
    from bertlab.use import predict as module
    from bertlab.errors import ConfigError
    from helpers import compose_tool

    (tmp_path / "in.txt").write_text("\n".join(f"text {i} is {'good' if i % 3 else 'bad'}"
                                               for i in range(30)) + "\n")
    (tmp_path / "other.txt").write_text("another text\n")

    def args(out, *extra, source="in.txt"):
        return compose_tool("predict", f"run_dir={run_dir}", f"input={tmp_path / source}",
                            f"output={out}", "precision=32", *extra)

    monkeypatch.setattr(module, "CHUNK", 8)
    whole, out = tmp_path / f"whole.{suffix}", tmp_path / f"out.{suffix}"
    assert module.predict(args(whole)) == 30
    real, calls = inference.predict_texts, []

    def stopped_in_the_third_chunk(*a, **kw):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*a, **kw)

    monkeypatch.setattr(inference, "predict_texts", stopped_in_the_third_chunk)
    with pytest.raises(KeyboardInterrupt):
        module.predict(args(out))
    partial = tmp_path / f"out.{suffix}.partial"
    assert (f"stopped: 16 of 30 rows are in {partial}; continue with the same command and "
            f"resume=true") in capsys.readouterr().err  # (Ctrl-C said nothing of resuming)
    assert not out.exists() and len(predictions_in(partial, suffix)) == 16
    with open(partial, "ab") as f:
        f.write(b'{"text": "text 16 is go')  # torn: past what the record says was written
    monkeypatch.setattr(inference, "predict_texts", real)
    with pytest.raises(ConfigError, match="has an unfinished prediction.*resume=true"):
        module.predict(args(out))  # never started over silently
    with pytest.raises(ConfigError, match="holds rows of another prediction \\(input="):
        module.predict(args(out, "resume=true", source="other.txt"))
    with pytest.raises(ConfigError, match="holds rows of another prediction \\(threshold="):
        module.predict(args(out, "resume=true", "threshold=0.3"))
    assert module.predict(args(out, "resume=true")) == 30
    assert out.read_bytes() == whole.read_bytes()
    assert not partial.exists() and not list(tmp_path.glob("*.partial*"))


def predictions_in(path, suffix):
    text = path.read_text()
    return text.splitlines() if suffix == "jsonl" else text.splitlines()[1:]


def test_predict_regression_values(tmp_path_factory, tmp_path):
    """Values in the label's units from predict.py, the Hugging Face export (the target's scale
    folded into its head) and the ONNX export alike."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from bertlab.use.export import export
    from helpers import compose_tool

    run = trained(tmp_path_factory, "data=valence")
    texts = [":)", "horrible", "fine"]
    (tmp_path / "in.txt").write_text("\n".join(texts))
    predict_in_process(f"run_dir={run}", f"input={tmp_path / 'in.txt'}",
                       f"output={tmp_path / 'out.jsonl'}", "precision=32")
    rows = predictions(tmp_path / "out.jsonl")
    assert [set(row) for row in rows] == [{"text", "value"}] * 3
    ours = torch.tensor([row["value"] for row in rows])
    export(compose_tool("export", f"run_dir={run}", f"out={tmp_path / 'hf'}"))
    assert "bertlab_target_scale" not in json.loads((tmp_path / "hf" / "config.json").read_text())
    tok = AutoTokenizer.from_pretrained(tmp_path / "hf")
    hf = AutoModelForSequenceClassification.from_pretrained(tmp_path / "hf").eval()
    with torch.no_grad():
        theirs = hf(**tok(texts, padding=True, return_tensors="pt")).logits.squeeze(-1)
    assert torch.allclose(theirs, ours, atol=1e-4), (theirs, ours)
    export(compose_tool("export", f"run_dir={run}", "format=onnx"))
    predict_in_process(f"run_dir={run}", f"input={tmp_path / 'in.txt'}",
                       f"output={tmp_path / 'onnx.jsonl'}", "backend=onnx")
    onnx = torch.tensor([row["value"] for row in predictions(tmp_path / "onnx.jsonl")])
    assert torch.allclose(onnx, ours, atol=1e-4), (onnx, ours)


@pytest.mark.parametrize("setup, args, code, words", [  # 2: a usage mistake, 1: bad input
    ("empty", ["input={tmp}/empty.txt"], 1, "holds no texts"),
    ("blank", ["input={tmp}/blank.txt"], 1, "has 1 blank text(s), the first at row 2"),
    ("column", ["input={tmp}/t.csv", "text_column=body"], 1, "text_column='body' is not a column"),
    ("semicolons", ["input={tmp}/semi.csv"], 1,
     "its columns are: text;x; separated by ';'? set read_kwargs={sep: ';'}"),
    ("commas", ["input={tmp}/comma.tsv"], 1, "separated by ','? set read_kwargs={sep: ','}"),
    ("lists", ["input={tmp}/lists.jsonl"], 1, "holds a list (['a', 'b']), not text"),
    ("exists", ["input={tmp}/ok.txt", "output={tmp}/old.jsonl"], 2,
     "exists already and is kept; choose a new name: output="),
    ("nockpt", ["input={tmp}/ok.txt", "run_dir={tmp}"], 1, "has no checkpoints/best.ckpt"),
    ("truncated", ["input={tmp}/ok.txt", "ckpt_path={tmp}/cut.ckpt"], 1, "truncated, corrupted"),
    ("precision", ["input={tmp}/ok.txt", "precision=fp16"], 2, "precision=fp16 is not valid"),
    ("explain", ["input={tmp}/ok.txt", "explain=maybe"], 2, "explain='maybe' is not valid; use true"),
    ("folder", ["input={tmp}"], 2, "is a folder; give a file"),
])
def test_predict_bad_input_is_one_line(run_dir, tmp_path, setup, args, code, words):
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "blank.txt").write_text("good\n   \nbad\n")
    (tmp_path / "t.csv").write_text("text,x\nhello,1\n")
    (tmp_path / "semi.csv").write_text("text;x\nhello;1\n")
    (tmp_path / "comma.tsv").write_text("text,x\nhello,1\n")
    (tmp_path / "lists.jsonl").write_text('{"text": ["a", "b"]}\n')
    (tmp_path / "ok.txt").write_text("fine\n")
    (tmp_path / "old.jsonl").write_text("{}\n")
    (tmp_path / "cut.ckpt").write_bytes((run_dir / "checkpoints" / "best.ckpt").read_bytes()[:5000])
    args = [a.format(tmp=tmp_path) for a in args]
    if not any(a.startswith(("run_dir=", "ckpt_path=")) for a in args):
        args.append(f"run_dir={run_dir}")
    out = tmp_path / "p.jsonl"
    if not any(a.startswith("output=") for a in args):
        args.append(f"output={out}")
    if setup in ("empty", "precision"):  # the command line, for each exit code
        r = tool("predict.py", *args)
        assert r.returncode == code, r.stderr[-2000:]
        assert r.stderr.strip().splitlines()[-1].startswith("error: ") and words in r.stderr
        assert "Traceback" not in r.stderr
    else:  # the rest in-process (the same error; run_task prints it as the line above)
        from bertlab.errors import ConfigError
        from bertlab.use.predict import predict

        with initialize_config_dir(str(CONF), version_base="1.3"):
            cfg = compose("predict", overrides=args)
        with pytest.raises(BertlabError) as found:
            predict(cfg)
        assert isinstance(found.value, ConfigError) == (code == 2) and words in str(found.value)
    assert not out.exists()
    assert (tmp_path / "old.jsonl").read_text() == "{}\n"  # never overwritten


def test_predict_reads_what_its_error_lines_suggest(run_dir, tmp_path):
    """A latin-1 csv was read with replacement characters ('caf\ufffd'), with no way to say its
    encoding; now its one line names read_kwargs, and that reads it (a .txt too)."""
    (tmp_path / "latin.csv").write_bytes("text,x\ncaf\u00e9 na\u00efve,1\n".encode("latin-1"))
    (tmp_path / "latin.txt").write_bytes("caf\u00e9 na\u00efve\n".encode("latin-1"))
    (tmp_path / "semi.csv").write_text("text;x\nhello, world;1\n")
    for name, kwargs, text in [("latin.csv", "{encoding: latin-1}", "caf\u00e9 na\u00efve"),
                               ("latin.txt", "{encoding: latin-1}", "caf\u00e9 na\u00efve"),
                               ("semi.csv", "{sep: ';'}", "hello, world")]:
        with pytest.raises(BertlabError, match=re.escape(f"read_kwargs={kwargs}")):
            predict_in_process(f"run_dir={run_dir}", f"input={tmp_path / name}",
                               f"output={tmp_path / (name + '.jsonl')}")
        predict_in_process(f"run_dir={run_dir}", f"input={tmp_path / name}",
                           f"output={tmp_path / (name + '.jsonl')}", f"read_kwargs={kwargs}")
        assert [r["text"] for r in predictions(tmp_path / (name + ".jsonl"))] == [text]


def test_predict_in_bf16_agrees_with_fp32(run_dir):
    from transformers import AutoTokenizer

    from bertlab.models.inference import predict_texts
    from bertlab.models.checkpoints import find_checkpoint, load_network

    model = load_network(find_checkpoint(str(run_dir)))
    tok = AutoTokenizer.from_pretrained(model.hparams.model["tokenizer"])
    texts = [t for t, _ in sentences(40, seed=3)]
    fp32 = predict_texts(model, tok, texts)
    bf16 = predict_texts(model, tok, texts, precision="bf16")
    assert not torch.equal(fp32, bf16)  # really computed in bfloat16
    assert (bf16 - fp32).abs().max() < 2e-2 and (bf16.argmax(-1) == fp32.argmax(-1)).float().mean() > 0.9


def test_checkpoint_of_another_kind_is_refused(tmp_path):
    import torch

    from bertlab.models.checkpoints import load_model

    torch.save({"state_dict": {}}, tmp_path / "other.ckpt")
    with pytest.raises(BertlabError, match="not a bertlab checkpoint"):
        load_model(tmp_path / "other.ckpt")


def test_export_loads_in_a_pipeline_with_the_same_predictions(run_dir, tmp_path):
    from transformers import pipeline

    out = tmp_path / "hf_model"
    r = tool("export.py", f"run_dir={run_dir}", f"out={out}", env=cold_caches(tmp_path))
    assert_quiet(r)  # (no library chatter: test_console.py)
    assert (out / "model.safetensors").is_file() and (out / "README.md").is_file()
    config = json.loads((out / "config.json").read_text())
    assert config["id2label"] == {"0": "negative", "1": "neutral", "2": "positive"}
    assert config["problem_type"] == "single_label_classification"
    assert "test/acc" in (out / "README.md").read_text()

    texts = ["what a great day", "this is awful", "the car drives itself"]  # clean already
    (tmp_path / "in.txt").write_text("\n".join(texts))
    predict_in_process(f"run_dir={run_dir}", f"input={tmp_path / 'in.txt'}",
                       f"output={tmp_path / 'p.jsonl'}", "precision=32")  # (the pipeline runs fp32)
    ours = predictions(tmp_path / "p.jsonl")
    theirs = pipeline("text-classification", model=str(out), device="cpu")(texts, top_k=None)
    for mine, scores in zip(ours, theirs):
        for s in scores:
            assert s["score"] == pytest.approx(mine[f"p_{s['label']}"], abs=1e-4)
    # (an existing out is refused: test_mistakes)
    card = (out / "README.md").read_text()
    assert "from a randomly initialised encoder" in card and str(Path.home()) not in card
    assert "site-packages" not in card  # no path of this machine


def test_a_mean_pooling_run_exports_its_own_head(tmp_path_factory, tmp_path):
    """model.pooling=mean (and model.normalize=true): the Hugging Face export carries the head's
    code (pipeline() with trust_remote_code=True agrees with predict.py; without it transformers
    refuses, never the [CLS] head); the ONNX export agrees too."""
    from transformers import pipeline

    from bertlab.use.export import export
    from test_serve import predict, probabilities
    from helpers import compose_tool

    run = trained(tmp_path_factory, "model.pooling=mean", "model.normalize=true")
    texts = ["what a great day", "this is awful", "the car drives itself"]
    (tmp_path / "in.txt").write_text("\n".join(texts))
    ours = predict(run, tmp_path, "ours", "precision=32")
    out = tmp_path / "hf"
    export(compose_tool("export", f"run_dir={run}", f"out={out}"))
    assert json.loads((out / "config.json").read_text())["model_type"] == "bertlab-mean-pooling"
    assert "trust_remote_code=True" in (out / "README.md").read_text()
    with pytest.raises(ValueError, match="trust_remote_code"):
        pipeline("text-classification", model=str(out), device="cpu")
    theirs = pipeline("text-classification", model=str(out), device="cpu",
                      trust_remote_code=True)(texts, top_k=None)
    for mine, scores in zip(ours, theirs):
        for s in scores:
            assert s["score"] == pytest.approx(mine[f"p_{s['label']}"], abs=1e-4)
    export(compose_tool("export", f"run_dir={run}", "format=onnx"))
    onnx = predict(run, tmp_path, "onnx", "backend=onnx")
    assert (probabilities(onnx) - probabilities(ours)).abs().max() < 1e-4


def test_a_trailing_blank_line_is_not_a_text(run_dir, tmp_path):
    # a line ends at \n or \r\n only: \u2028, \x85 and \x1c inside a text (tweets hold them) do not cut it
    (tmp_path / "in.txt").write_bytes("good\u2028film\r\nbad\x85 film\x1c\rend\n\n".encode())
    predict_in_process(f"run_dir={run_dir}", f"input={tmp_path / 'in.txt'}", f"output={tmp_path / 'p.jsonl'}")
    assert [row["text"] for row in predictions(tmp_path / "p.jsonl")] == ["good\u2028film",
                                                                          "bad\x85 film\x1c\rend"]


def test_error_analysis_after_training(run_dir):
    import csv

    import tensorboard.backend.event_processing.event_accumulator as ea

    assert (run_dir / "confusion_matrix.png").stat().st_size > 1000
    report = list(csv.DictReader((run_dir / "classification_report.csv").open()))
    assert [r["label"] for r in report] == ["negative", "neutral", "positive", "macro avg"]
    assert sum(int(r["support"]) for r in report[:3]) == 16  # the validation rows
    errors = list(csv.DictReader((run_dir / "errors.csv").open()))
    confidence = [float(e["confidence"]) for e in errors]
    assert confidence == sorted(confidence, reverse=True) and all(e["true"] != e["predicted"]
                                                                  for e in errors)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert len(errors) == round((1 - metrics["val/acc"]) * 16)
    images = ea.EventAccumulator(str(run_dir / "tensorboard")).Reload().Tags()["images"]
    assert "val/confusion_matrix" in images


def test_confusion_matrix_counts_sum_to_the_split(run_dir):
    import torch
    import torchmetrics.functional as tmf
    from hydra.utils import instantiate

    from bertlab.models.scoring import collect
    from bertlab.models.checkpoints import load_model
    from bertlab.cli.runs import run_config

    cfg = run_config(run_dir)
    model = load_model(run_dir / "checkpoints" / "best.ckpt")
    dm = instantiate(cfg.data, tokenizer=cfg.model.tokenizer, max_length=cfg.max_length,
                     batch_size=cfg.batch_size, seed=cfg.seed)
    dm.setup()
    scores, target = collect(model, dm.eval_dataloader("validation"))
    cm = tmf.confusion_matrix(scores.argmax(-1), target, task="multiclass", num_classes=3)
    assert int(cm.sum()) == len(dm.dataset["validation"]) == 16
    assert torch.equal(cm.sum(1), torch.bincount(target, minlength=3))


def test_regression_analysis(tmp_path_factory):
    import csv

    run = trained(tmp_path_factory, "data=valence")
    assert (run / "predicted_vs_true.png").is_file()
    errors = [float(r["abs_error"]) for r in csv.DictReader((run / "errors.csv").open())]
    assert errors == sorted(errors, reverse=True) and len(errors) > 0


def test_predict_explain_adds_tokens_and_a_page(run_dir, tmp_path):
    (tmp_path / "in.txt").write_text("what a great day\nthis is awful\n")
    predict_in_process(f"run_dir={run_dir}", f"input={tmp_path / 'in.txt'}", f"output={tmp_path / 'p.jsonl'}",
                       "explain=true")
    rows = predictions(tmp_path / "p.jsonl")
    shown = [[pair.rsplit(":", 1)[0] for pair in row["explanation"].split()] for row in rows]
    assert sorted(shown[0]) == ["a", "day", "great", "what"]  # every word, no [CLS] / [SEP]
    assert sorted(shown[1]) == ["awful", "is", "this"]
    page = (tmp_path / "p.html").read_text()
    assert page.count("<p><b>") == 2 and "awful" in page


def test_explanations_give_one_score_per_token(run_dir):
    from transformers import AutoTokenizer

    from bertlab.use.explain import explain_texts
    from bertlab.models.checkpoints import load_model

    model = load_model(run_dir / "checkpoints" / "best.ckpt")
    tokenizer = AutoTokenizer.from_pretrained(model.hparams.model["tokenizer"])
    (scores,) = explain_texts(model, tokenizer, ["a truly great film"], [2], n_steps=8)
    assert [t for t, _ in scores] == ["[CLS]", "a", "truly", "great", "film", "[SEP]"]
    assert sum(a * a for _, a in scores) == pytest.approx(1, abs=1e-3)


def test_predict_multilabel_lists_labels_over_threshold(tmp_path_factory, tmp_path):
    import pandas as pd

    tags = [[["a"], ["b"], ["a", "c"]][i % 3] for i in range(90)]
    path = tmp_path / "t.jsonl"
    pd.DataFrame({"text": [f"text number {i}" for i in range(90)], "label": tags}).to_json(
        path, orient="records", lines=True)
    run = trained(tmp_path_factory, "data=files", f"data.train_file={path}")
    (tmp_path / "in.txt").write_text("text number 3\n")
    from bertlab.use.predict import predict
    from helpers import compose_tool

    for threshold in ("0.01", "0.99"):  # (in-process: the command line has tests of its own)
        out = tmp_path / f"p{threshold}.jsonl"
        predict(compose_tool("predict", f"run_dir={run}", f"input={tmp_path / 'in.txt'}",
                             f"output={out}", f"threshold={threshold}"))
        (row,) = predictions(out)
        probs = {n: row[f"p_{n}"] for n in "abc"}
        assert row["labels"] == [n for n, p in probs.items() if p > float(threshold)]


def test_eval_refuses_a_checkpoint_of_another_task(run_dir, tmp_path_factory, tmp_path):
    regression = trained(tmp_path_factory, "data=valence")
    with pytest.raises(BertlabError, match="is a regression checkpoint but the data is for "
                                           "classification"):
        evaluate(run_dir, f"ckpt_path={regression / 'checkpoints' / 'best.ckpt'}",
                 out=tmp_path / "x")
