"""distill.teacher: a student learns from a trained run's predictions (and from unlabelled text)."""
from __future__ import annotations

import json
import re

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from bertlab.stages import distill
from bertlab.models.losses import distillation_loss
from bertlab.errors import user_error
from bertlab.task import CLASSIFICATION, REGRESSION
from bertlab.training.train import train
from conftest import sentences, stopped_and_resumed

COMMON = ["batch_size=16", "lr=1e-3", "max_epochs=2"]


def test_the_loss_is_the_documented_mix():
    g = torch.Generator().manual_seed(0)
    student, teacher = torch.randn(6, 3, generator=g), torch.randn(6, 3, generator=g)
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    labeled = torch.tensor([True, True, True, False, False, False])
    t, alpha = 2.0, 0.3
    total, soft, hard = distillation_loss(CLASSIFICATION, student, teacher, labels, labeled, t, alpha,
                                     torch.nn.CrossEntropyLoss())
    p, log_q = (teacher / t).softmax(-1), (student / t).log_softmax(-1)
    by_hand = (p * (p.log() - log_q)).sum(-1).mean() * t * t  # KL(teacher || student), per row
    assert soft == pytest.approx(float(by_hand), rel=1e-5)
    assert hard == pytest.approx(float(F.cross_entropy(student[:3], labels[:3])), rel=1e-5)
    assert total == pytest.approx(alpha * float(by_hand) + (1 - alpha) * float(hard), rel=1e-5)
    none = torch.zeros(6, dtype=torch.bool)  # unlabelled rows only: the teacher alone
    total, soft, hard = distillation_loss(CLASSIFICATION, student, teacher, labels, none, t, alpha,
                                     torch.nn.CrossEntropyLoss())
    assert hard == 0 and total == pytest.approx(alpha * float(soft))
    values, target = torch.randn(4, generator=g), torch.randn(4, generator=g)  # regression: MSE
    total, soft, hard = distillation_loss(REGRESSION, values, target.unsqueeze(1), target, None, t, 1.0,
                                     torch.nn.MSELoss())
    assert soft == pytest.approx(float(((values - target) ** 2).mean()), rel=1e-5) and total == soft


def test_the_student_keeps_every_other_teacher_layer():
    assert distill.kept_layers(6, 3) == [1, 3, 5]
    assert distill.kept_layers(12, 6) == [1, 3, 5, 7, 9, 11]
    assert distill.kept_layers(4, 1) == [3]
    from bertlab.models.classifier import TextClassifier

    def model(layers):
        cfg = {"name_or_path": TINY_TOKENIZER, "pretrained": False, "config_overrides": {
            "hidden_size": 32, "num_hidden_layers": layers, "num_attention_heads": 2,
            "intermediate_size": 64}}
        return TextClassifier(cfg, "classification", ["a", "b"], {"_target_": "torch.nn.CrossEntropyLoss"},
                              {"_target_": "torch.optim.AdamW", "lr": 1e-3}, {})

    teacher, student = model(4), model(2)
    distill.init_from_teacher(student, teacher, [1, 3])
    for i, j in enumerate([1, 3]):
        ours = student.net.bert.encoder.layer[i].attention.self.query.weight
        assert torch.equal(ours, teacher.net.bert.encoder.layer[j].attention.self.query.weight)
    assert torch.equal(student.net.bert.embeddings.word_embeddings.weight,
                       teacher.net.bert.embeddings.word_embeddings.weight)
    assert torch.equal(student.net.classifier.weight, teacher.net.classifier.weight)


TINY_TOKENIZER = None


@pytest.fixture(scope="module", autouse=True)
def _tokenizer():
    global TINY_TOKENIZER
    from helpers import compose_tool

    TINY_TOKENIZER = compose_tool("train", "model=tiny").model.tokenizer


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    """A finished tiny run on 200 sentences, and its data file."""
    from hydra import compose, initialize_config_dir

    from conftest import CONF

    folder = tmp_path_factory.mktemp("teacher")
    rows = sentences(200)
    data = folder / "d.csv"
    pd.DataFrame({"text": [t for t, _ in rows], "label": [y for _, y in rows]}).to_csv(data, index=False)
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=["model=tiny", "data=files", f"data.train_file={data}",
                                          f"output_dir={folder / 'run'}", *COMMON])
    train(cfg)
    return folder / "run", data


def test_a_student_learns_from_the_teacher_and_unlabelled_text(teacher, make_cfg, tmp_path):
    from transformers import AutoTokenizer

    from bertlab.models.checkpoints import find_checkpoint, load_network
    from bertlab.data.datamodule import from_config
    from bertlab.models.inference import predict_texts

    run, data = teacher
    unlabeled = tmp_path / "u.jsonl"  # text without labels, in a table
    unlabeled.write_text("".join(json.dumps({"text": t, "note": 1}) + "\n" for t, _ in sentences(90, seed=7)))
    args = ["data=files", f"data.train_file={data}", f"data.unlabeled_file={unlabeled}",
            f"distill.teacher={run}", "distill.layers=1", *COMMON]
    train(make_cfg(*args))
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    record = metrics["distill"]
    assert record["teacher"] == str(run) and record["unlabeled_rows"] == 90
    assert record["teacher_metrics"]["test/acc"] == json.loads((run / "metrics.json").read_text())["test/acc"]
    assert record["student"] == "the teacher's layers [1] (of its encoder)"
    assert metrics["data"]["rows"]["train"] == 160 + 90

    student = load_network(find_checkpoint(str(tmp_path / "run")))  # a normal run: predict takes it
    assert student.net.config.num_hidden_layers == 1
    tok = AutoTokenizer.from_pretrained(TINY_TOKENIZER)
    assert predict_texts(student, tok, ["a great film"]).shape == (1, 2)

    dm = from_config(make_cfg(*args))  # the unlabelled rows: no label, the teacher's targets
    dm.setup("fit")
    targets = distill.targets(find_checkpoint(str(run)), dm, dm.cache_root)
    train_rows = dm.dataset["train"]
    assert sum(train_rows["labeled"]) == 160 and len(train_rows) == 250
    teacher_net = load_network(find_checkpoint(str(run)))
    texts = dm.texts("train")[-3:]  # the last rows are the unlabelled ones
    expected = predict_texts(teacher_net, tok, texts, logits=True,
                             precision="bf16" if torch.cpu._is_avx512_bf16_supported() else "32")
    assert torch.allclose(targets[-3:], expected, atol=1e-5)


def write_csv(path, label_names=("negative", "positive")):
    rows = sentences(60)
    names = dict(zip(("negative", "positive"), label_names))
    pd.DataFrame({"text": [t for t, _ in rows], "label": [names[y] for _, y in rows]}).to_csv(
        path, index=False)
    return path


@pytest.mark.parametrize("case, words", [
    ("missing", r"distill.teacher=.*nowhere is not a folder"),
    ("unfinished", r"is not a finished run \(its status: interrupted\)"),
    ("labels", r"distill.teacher was trained for classification with labels \['negative', 'positive'\]; "
               r"this data is classification with labels \['bad', 'good'\]"),
    ("layers", r"distill.layers=2 is not valid; the teacher has 2 layers, so use 1..1"),
    ("column", r"data.unlabeled_file=.*u.csv has no column 'text'"),
    ("no teacher", r"data.unlabeled_file is learnt from a teacher's predictions"),
    ("rdrop", r"regularization.rdrop=0.5 regularizes training on labels, and distill.teacher trains "),
])
def test_distillation_mistakes_are_one_line(teacher, make_cfg, tmp_path, case, words):
    run, data = teacher
    args = ["data=files", f"data.train_file={data}", f"distill.teacher={run}", "distill.layers=1",
            *COMMON]
    if case == "missing":
        args[2] = f"distill.teacher={tmp_path / 'nowhere'}"
    elif case == "unfinished":
        (tmp_path / "t").mkdir()
        (tmp_path / "t" / "metrics.json").write_text(json.dumps({"status": "interrupted"}))
        args[2] = f"distill.teacher={tmp_path / 't'}"
    elif case == "labels":
        args[1] = f"data.train_file={write_csv(tmp_path / 'other.csv', ('bad', 'good'))}"
    elif case == "layers":
        args[3] = "distill.layers=2"
    elif case == "column":
        pd.DataFrame({"body": ["some text"]}).to_csv(tmp_path / "u.csv", index=False)
        args.append(f"data.unlabeled_file={tmp_path / 'u.csv'}")
    elif case == "no teacher":
        (tmp_path / "u.txt").write_text("some text\n")
        args = [a for a in args if not a.startswith("distill.")]
        args.append(f"data.unlabeled_file={tmp_path / 'u.txt'}")
    elif case == "rdrop":
        args.append("regularization.rdrop=0.5")
    with pytest.raises(Exception) as raised:
        train(make_cfg(*args))
    err = user_error(raised.value)
    assert err is not None and re.search(words, str(err)), raised.value
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_a_student_of_another_model_option(teacher, make_cfg, tmp_path):
    run, data = teacher
    train(make_cfg("data=files", f"data.train_file={data}", f"distill.teacher={run}",
                   "distill.layers=null", "model.config_overrides.num_hidden_layers=1", *COMMON))
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["distill"]["student"] == "model=" and metrics["status"] == "finished"


def test_a_student_resumes_to_the_same_metrics(teacher, make_cfg, tmp_path):
    """A student stopped after its first epoch and continued from last.ckpt ends exactly where an
    uninterrupted one does: its weights come from the checkpoint (not the teacher again), the
    teacher's targets from the cache. The uninterrupted run computes the targets (its own cache
    folder) and the others read them: a run does not depend on which it did."""
    run, data = teacher
    expected, got = stopped_and_resumed(make_cfg, tmp_path, [
        "data=files", f"data.train_file={data}", f"data.cache_dir={tmp_path / 'cache'}",
        f"distill.teacher={run}", "distill.layers=1", "batch_size=16", "lr=1e-3", "scheduler=constant",
        "trainer.deterministic=true"])
    assert list((tmp_path / "cache").glob("teacher-*.pt"))
    assert got["distill"] == expected["distill"]
    for key in ("val/loss", "val/acc", "test/loss", "test/acc"):
        assert got[key] == expected[key], key


def test_a_sweep_of_lora_students_under_debug_fast(teacher, tmp_path):
    """Distillation and LoRA work in a multirun sweep and with debug=fast like any run: one
    command sweeps distill.alpha over LoRA students of the teacher; each job is a finished run
    that records its teacher, its alpha and its trainable parameters."""
    from helpers import cli, job

    run, data = teacher
    r = cli(["-m", "debug=fast", "data=files", f"data.train_file={data}", f"distill.teacher={run}",
             "distill.layers=null", "model.peft=lora", "distill.alpha=0.3,0.7"], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    (sweep,) = (tmp_path / "outputs" / "multiruns").iterdir()
    for i, alpha in enumerate((0.3, 0.7)):
        m = json.loads((job(sweep, i) / "metrics.json").read_text())
        assert m["status"] == "finished" and m["distill"]["alpha"] == alpha
        assert m["distill"]["teacher"] == str(run) and m["distill"]["student"] == "model="
        params = m["parameters"]
        assert 0 < params["trainable_at_start"] < params["total"]  # adapters and head only
        assert m["lr"] == {"value": 1e-3, "model_recommends": 1e-3}  # LoRA's own default rate


def test_a_lora_student_under_ddp(teacher, tmp_path):
    """trainer=ddp_cpu (two processes) with a LoRA student of the teacher: one run folder, a
    finished run whose checkpoint predicts, the teacher's targets cached once."""
    from helpers import cli

    run, data = teacher
    r = cli(["debug=fast", "trainer=ddp_cpu", "data=files", f"data.train_file={data}",
             f"data.cache_dir={tmp_path / 'cache'}", f"distill.teacher={run}", "distill.layers=null",
             "model.peft=lora"], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    (folder,) = (tmp_path / "outputs" / "runs").iterdir()
    m = json.loads((folder / "metrics.json").read_text())
    assert m["status"] == "finished" and m["distill"]["teacher"] == str(run)
    assert 0 < m["parameters"]["trainable_at_start"] < m["parameters"]["total"]
    assert len(list((tmp_path / "cache").glob("teacher-*.pt"))) == 1
    from transformers import AutoTokenizer

    from bertlab.models.checkpoints import find_checkpoint, load_network
    from bertlab.models.inference import predict_texts

    student = load_network(find_checkpoint(str(folder)))
    tok = AutoTokenizer.from_pretrained(TINY_TOKENIZER)
    assert predict_texts(student, tok, ["a fine film"]).shape == (1, 2)


def test_an_unlabelled_txt_file_is_one_text_per_line(tmp_path):
    """A .txt data.unlabeled_file: lines end at \\n or \\r\\n only (a tweet may hold \\x85 or
    \\u2028), blank lines dropped."""
    from bertlab.data.unlabeled import read_unlabeled

    path = tmp_path / "u.txt"
    path.write_bytes("one\x85 text\r\n\n  two   texts \nthree\u2028end\n\n".encode())
    c = {"files": {"unlabeled": str(path)}, "text_column": "text", "text_pair_column": None,
         "read_kwargs": {}, "clean": []}
    assert read_unlabeled(c)["text"][:] == ["one\x85 text", "  two   texts ", "three\u2028end"]
