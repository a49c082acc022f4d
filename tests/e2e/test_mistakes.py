"""Two rules for every command: a run never changes a folder it does not own, and a mistake is
one line (`error: ...`) naming the bad value and what would be valid: exit 2 for a usage mistake,
1 for a failure while running, no traceback, nothing left behind."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import helpers
from conftest import ROOT, sentences

SMOKE = ["model=tiny", "data.max_samples=120", "batch_size=16", "max_epochs=1",
         "trainer.enable_progress_bar=false"]


def command(script, args, cwd, env=None):
    return helpers.command(f"{script}.py", args, cwd, env)


def snapshot(root: Path) -> dict:
    """Every path under `root` with its content's hash: what a refused command must not change."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file()
            else "dir" for p in sorted(root.rglob("*"))}


@pytest.fixture(scope="module")
def place(tmp_path_factory):
    """A folder with a finished run, a crashed one (no metrics.json), data files and a folder."""
    root = tmp_path_factory.mktemp("place")
    env = {"BERTLAB_CACHE": str(root / "cache")}
    data = root / "data.csv"
    data.write_text("text,label\n" + "".join(f"{t},{y}\n" for t, y in sentences(120)))
    r = command("train", [*SMOKE, "data=files", f"data.train_file={data}",
                          f"hydra.run.dir={root / 'finished'}"], root, env)
    assert r.returncode == 0, r.stderr[-2000:]
    shutil.copytree(root / "finished", root / "crashed")
    (root / "crashed" / "metrics.json").unlink()
    (root / "empty.csv").write_text("text,label\n")
    (root / "a_folder").mkdir()
    (root / "exported").mkdir()
    (root / "onnx_export").mkdir()  # what export.py format=onnx writes, as far as predict looks
    (root / "onnx_export" / "bertlab.json").write_text("{}")
    (root / "zero.ckpt").write_bytes(b"")
    (root / "latin.csv").write_bytes("text\ncaf\u00e9 na\u00efve\n".encode("latin-1"))
    (root / "binary.txt").write_bytes(b"PAR1\x00\x15\x04text\x00")
    (root / "texts.xlsx").write_bytes(b"PK\x03\x04")
    (root / "blank.txt").write_text("\n  \n")
    (root / "old.jsonl.partial").write_text('{"text": "rows of someone else"}\n')
    result = root / "finished" / "eval" / "2026-01-01_00-00-00-000000"  # what eval.py writes
    result.mkdir(parents=True)
    (result / "metrics.json").write_text("{}")
    return root, env


RUN = "{root}/finished"
# (script, arguments, exit code, the words the one line must hold)
REFUSED = [
    ("train", ["hydra.run.dir={root}/finished"], 2, "hydra.run.dir={root}/finished is in use"),
    ("train", ["hydra.run.dir={root}/crashed"], 2, "resume={root}/crashed"),
    ("train", ["output_dir={root}/finished"], 2, "output_dir={root}/finished is in use"),
    ("train", ["-m", "lr=1e-4,2e-4", "hydra.sweep.dir={root}/finished"], 2, "is in use"),
    ("train", ["resume={root}/finished"], 2, "has already finished (status finished)"),
    ("train", ["resume={root}/crashed", "lr=1"], 2, "drop lr=1"),
    ("train", ["lrr=1"], 2, "lrr is not a key of this config; did you mean lr"),
    ("train", ["trainer.precison=32"], 2, "did you mean trainer.precision"),
    ("train", ["~trainer.nope"], 2, "~trainer.nope removes a key that is not in this config"),
    ("train", ["eval"], 2, "'eval' is not an override"),
    ("train", ["lr=1e-4,2e-4"], 2, "lr=1e-4,2e-4 is a sweep; add -m for one run per value"),
    ("train", ["lr=-1"], 2, "lr=-1 is not valid"),
    ("train", ["scheduler.warmup=-1"], 2, "scheduler.warmup=-1 is not valid; use a fraction"),
    ("train", ["data.max_samples=0"], 2, "data.max_samples=0 is not valid; use a positive number"),
    ("train", ["loss=focal", "loss.gamma=-1"], 2, "loss.gamma=-1 is not valid; use a number >= 0"),
    ("train", ["weight_decay=-0.1"], 2, "weight_decay=-0.1 is not valid"),
    ("train", ["trainer.accumulate_grad_batches=0"], 2, "trainer.accumulate_grad_batches=0"),
    ("train", ["trainer.precision=fp16"], 2, "trainer.precision=fp16 is not valid; use one of auto"),
    ("train", ["monitor=val/accc"], 2, "monitor=val/accc is not a metric bertlab logs; use one of"),
    ("train", ["max_length=1000"], 2, "max_length=1000 is more than this model's limit of 512"),
    ("train", ["cv=1"], 2, "cv=1 is not valid; use a number of folds >= 2"),
    ("train", ["seed=-1"], 2, "seed=-1 is not valid; use an integer in [0, 4294967295]"),
    ("train", ["data.group_by_length=maybe"], 2, "group_by_length='maybe' is not valid; use true or false"),
    ("train", ["model.peft=lora", "model.lora.r=0"], 2, "model.lora.r=0 is not valid; use a positive"),
    ("train", ["distill.alpha=2"], 2, "distill.alpha=2 is not valid; use a weight in [0, 1]"),
    ("train", ["budget=5"], 2, "budget=5 is not valid; it is a group of settings: set its keys"),
    ("train", ["logger=null"], 2, "logger=null is not an option; valid: csv, many"),
    ("train", ["optimizer.layer_decay=0.9"], 2, "did you mean layer_decay"),  # moved to the top
    ("train", ["loss.class_weights=balanced"], 2, "did you mean class_weights"),
    ("train", ["scheduler=step", "scheduler.gamma=0.5"], 2, "did you mean scheduler.schedule.gamma"),
    ("train", ["data.max_length=64"], 2,
     "data.max_length is not a key of this config; did you mean max_length"),
    ("train", ["model=base"], 2, "model=base holds the keys every model option shares, not an option"),
    ("train", ["model.name_or_path=/nonexistent"], 2, "model.name_or_path=/nonexistent does not exist"),
    ("train", ["data=files", "data.train_file={root}/a_folder"], 2, "is a folder"),
    ("train", ["data=files", "data.train_file={root}/empty.csv"], 1, "holds no rows (only a header)"),
    ("train", ["data=files", "data.train_file={root}/data.csv", "data.text_column=label"], 2,
     "data.text_column and data.label_column are both 'label'"),
    ("train", ["data=files", "data.train_file={root}/data.csv", "data.text_pair_column=text"], 2,
     "data.text_column and data.text_pair_column are both 'text'"),
    ("train", ["-m", "--cfg", "job"], 2, "-m and --cfg cannot be used together"),
    ("train", ["-m", "hparams_search=lr_optuna", "hparams_search.storage={root}/nowhere/s.log"], 2,
     "hparams_search.storage={root}/nowhere/s.log cannot be opened"),
    ("train", ["-m", "hparams_search=lr_optuna", "hparams_search.storage=postgresql://u@127.0.0.1:1/db"],
     2, "hparams_search.storage=postgresql://u@127.0.0.1:1/db cannot be opened"),
    ("eval", ["run_dir={root}/finished", "split=nosuch"], 2, "split=nosuch is not in this run's data"),
    ("eval", ["run_dir={root}/finished", "file={root}/missing.csv"], 2, "does not exist"),
    ("eval", ["run_dir={root}/nowhere"], 2, "run_dir={root}/nowhere does not exist"),
    ("eval", ["run_dir={root}/finished", "lrr=1"], 2, "lrr is not a key"),
    ("shrink", ["run_dir={root}/finished", "drop_layers=-3"], 2, "drop_layers=-3"),
    ("predict", ["run_dir={root}/finished", "input={root}/a_folder"], 2,
     "input={root}/a_folder is a folder"),
    ("export", ["run_dir={root}/finished", "out={root}/exported"], 2, "exists already"),
    # a third pass at bad input (issue 36)
    ("train", ["--foo"], 2, "--foo is not an option; the options are"),
    ("train", ["data.long_text=window"], 2, "data.long_text='window' is not valid; use truncate or windows"),
    ("train", ["data.window_pool=avg"], 2, "data.window_pool='avg' is not valid; use mean or max"),
    ("train", ["data.task=regresion"], 2, "data.task='regresion' is not valid; use classification"),
    ("train", ["model.peft=qlora"], 2, "model.peft='qlora' is not valid; use lora"),
    ("train", ["cv=3", "data=files", "data.train_file={root}/data.csv",
               "data.validation_file={root}/data.csv"], 2, "cv makes its validation folds out of"),
    ("train", ["data=files", "data.train_file={root}/data.csv", "data.unlabeled_file={root}/blank.txt"],
     2, "data.unlabeled_file is learnt from a teacher's predictions"),
    ("tune_lr", ["tune_lr.min_lr=1", "tune_lr.max_lr=0.1"], 2, "tune_lr.min_lr=1 is not below"),
    ("train", ["logger=[csv,nope]"], 2, "logger=nope is not an option; valid: csv"),
    ("train", ["logger=mlflow", "logger.mlflow.tracking_uri=http://127.0.0.1:9"], 2,
     "logger.mlflow.tracking_uri=http://127.0.0.1:9 cannot be reached"),
    ("train", ["model.name_or_path={root}/a_folder"], 2, "is a folder without a model (no config.json)"),
    ("train", ["data.read_kwargs=semicolon"], 2, "data.read_kwargs='semicolon' is not valid"),
    ("shrink", ["run_dir={root}/finished", "int8=maybe"], 2, "int8='maybe' is not valid; use true or false"),
    ("export", ["run_dir={root}/finished", "format=onnx", "int8=nope"], 2, "int8='nope' is not valid"),
    ("eval", [], 2, "give run_dir=outputs/runs/<run>"),
    ("eval", ["run_dir={root}/finished/eval/2026-01-01_00-00-00-000000"], 2,
     "is an eval.py result, not a training run; give the run it tested: run_dir="),
    ("eval", ["run_dir={root}/finished", "file={root}/data.csv", "read_kwargs=semicolon"], 2,
     "read_kwargs='semicolon' is not valid; give the reader's options as a dict"),
    ("eval", ["run_dir={root}/finished", "read_kwargs={{sep: ';'}}"], 2, "read_kwargs is for file="),
    ("predict", ["run_dir={root}/finished", "input={root}/texts.xlsx"], 2,
     "cannot read .xlsx; give .txt (one text per line), .csv, .tsv"),
    ("serve", ["run_dir={root}/finished", "port=80"], 2, "port=80 is not valid; use a port in 1024"),
    ("eval", ["-m", "run_dir={root}/finished"], 2, "eval.py runs once (-m sweeps are for train.py)"),
    ("serve", ["run_dir={root}/finished", "accelerator=banana"], 2,
     "accelerator='banana' is not valid; use auto, cpu, cuda or gpu"),
    # label issues (issue 38); mistakes found once the data is read: tests/label_issues/
    ("find_label_issues", ["method=bogus"], 2, "method=bogus is not valid; use embeddings or finetune"),
    ("find_label_issues", ["folds=1"], 2, "folds=1 is not valid; use a number of folds >= 2"),
    ("find_label_issues", ["hydra.run.dir={root}/finished"], 2, "hydra.run.dir={root}/finished is in use"),
    ("train", ["data.exclude_rows={root}/nope.csv"], 2, "data.exclude_rows={root}/nope.csv does not exist"),
    ("train", ["data.exclude_top=0"], 2, "data.exclude_top=0 is not valid; use a positive number of rows"),
    # the time budget (issue 39)
    ("train", ["budget.time=0"], 2, "budget.time=0 is not valid: it must be longer than 0; use a duration"),
    ("train", ["budget.time=-5m"], 2, "budget.time='-5m' is not valid; use a duration such as 90s"),
    ("train", ["budget.time=10 minutes"], 2, "budget.time='10 minutes' is not valid; use a duration"),
    ("train", ["budget.time=1m", "trainer.max_time=00:00:01:00"], 2, "are two time limits; give one"),
    ("train", ["model.head_init=lp"], 2, "model.head_init='lp' is not valid; use auto, probe or null"),
    ("train", ["model.head_refit=maybe"], 2,
     "model.head_refit='maybe' is not valid; use auto, true or false"),
    ("train", ["model.normalize=yes"], 2, "model.normalize='yes' is not valid; use auto, true or false"),
    ("train", ["model.pooling=cls", "model.normalize=true"], 2,
     "model.normalize=true normalizes the mean-pooled vector; model.pooling=cls reads the [CLS] pooler"),
    ("train", ["callbacks=soup", "callbacks.soup.method=best"], 2,
     "callbacks.soup.method='best' is not valid; use greedy or uniform"),
    ("train", ["callbacks=soup", "callbacks.soup.save_top_k=1"], 2,
     "callbacks.soup.save_top_k=1 is not valid; use a number of checkpoints >= 2"),
]
if not torch.cuda.is_available():  # a GPU asked for by name where there is none (was CUDA's traceback)
    REFUSED += [("train", ["trainer=gpu"], 2, "trainer.accelerator=gpu needs a CUDA GPU"),
                ("serve", ["run_dir={root}/finished", "accelerator=cuda"], 2,
                 "accelerator=cuda needs a CUDA GPU")]


# the same rule for the mistakes known only once the data or a model is loaded, checked in this
# process, which saves a command's start-up (torch and Lightning imported) each: each command line
# above already shows that run_task prints a BertlabError as its one line, with its exit code
IN_PROCESS = [
    # train.py, once it has read the data or loaded the model
    ("train", ["monitor=val/pearson"], 2, "monitor=val/pearson is not a metric of this classification"),
    ("train", ["data=files", "data.train_file={root}/data.csv", "data.unlabeled_file={root}/blank.txt",
               "distill.teacher={root}/finished", "distill.layers=1"], 1, "holds no texts"),
    ("train", ["data=files", "data.train_file={root}/latin.csv"], 1,
     "not UTF-8: set data.read_kwargs={{encoding: latin-1}}"),
    ("eval", ["run_dir={root}/finished", "ckpt_path={root}/zero.ckpt"], 1, "the file is empty"),
    ("train", ["trainer.devices=banana"], 2, "Lightning's Trainer refuses the trainer settings: `devices`"),
    ("train", ["budget.time=1s"], 2, "budget.time=1s is shorter than the start-up"),
    # the commands that load a model
    ("predict", ["run_dir={root}/onnx_export", "input={root}/data.csv"], 2,
     "is an ONNX export (export.py format=onnx); add backend=onnx"),
    ("eval", ["run_dir={root}/finished", "ckpt_path={root}/data.csv"], 1, "not a bertlab checkpoint"),
    ("export", ["run_dir={root}/finished", "ckpt_path={root}/zero.ckpt", "out={root}/new"], 1,
     "the file is empty"),
    ("predict", ["run_dir={root}/finished", "input={root}/data.csv", "ckpt_path={root}/data.csv"], 1,
     "not a bertlab checkpoint"),
    ("predict", ["run_dir={root}/finished", "input={root}/binary.txt"], 1, "is not a text file"),
    ("predict", ["run_dir={root}/finished", "input={root}/latin.csv"], 1,
     "not UTF-8: set read_kwargs={{encoding: latin-1}}"),
    ("predict", ["run_dir={root}/finished", "input={root}/data.csv", "threshold=0.3"], 2,
     "threshold=0.3 is for multi-label runs"),
    ("predict", ["run_dir={root}/finished", "input={root}/data.csv", "text_pair_column=label"], 2,
     "text_pair_column=label is for a run trained on text pairs"),
    ("predict", ["run_dir={root}/finished", "input={root}/data.csv", "output={root}/old.jsonl",
                 "resume=true"], 2, "has no record of the prediction that wrote it"),
]


@pytest.mark.parametrize("script, args, code, words", IN_PROCESS,
                         ids=[f"{s}:{' '.join(a)}" for s, a, _, _ in IN_PROCESS])
def test_a_mistake_found_after_loading_is_one_error_and_changes_nothing(place, tmp_path, monkeypatch,
                                                                       script, args, code, words):
    import importlib

    from bertlab.errors import BertlabError, ConfigError
    from helpers import compose_tool

    root, env = place
    monkeypatch.chdir(root)  # (predict's default output is relative)
    monkeypatch.setenv("BERTLAB_CACHE", env["BERTLAB_CACHE"])
    args = [a.format(root=root) for a in args]
    extra = [f"output_dir={tmp_path / 'out'}"] if script in ("eval", "train") else []
    cfg = compose_tool(script, *(SMOKE if script == "train" else []), *args, *extra)
    task = {"eval": "bertlab.use.evaluate:evaluate", "export": "bertlab.use.export:export",
            "predict": "bertlab.use.predict:predict", "train": "bertlab.training.train:train"}[script]
    module, function = task.split(":")
    before = snapshot(root)
    with pytest.raises(BertlabError) as raised:
        getattr(importlib.import_module(module), function)(cfg)
    assert isinstance(raised.value, ConfigError) == (code == 2)
    assert words.format(root=root) in str(raised.value) and "\n" not in str(raised.value)
    after = snapshot(root)
    assert sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k)
                  and not k.startswith("cache")) == []


@pytest.mark.parametrize("script, args, code, words", REFUSED,
                         ids=[f"{s}:{' '.join(a)}" for s, a, _, _ in REFUSED])
def test_a_mistake_is_one_line_and_changes_nothing(place, script, args, code, words):
    root, env = place
    args = [a.format(root=root) for a in args]
    before = snapshot(root)
    smoke = SMOKE if script == "train" and not any(a.startswith("resume=") for a in args) else []
    r = command(script, [*smoke, *args], root, env)
    lines = [line for line in r.stderr.splitlines() if line.strip() and "Warning" not in line
             and not line.startswith(("  warnings.warn", "[20"))]
    assert r.returncode == code, r.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr[-2000:]
    assert words.format(root=root) in lines[0]
    assert "Traceback" not in r.stderr
    after = snapshot(root)
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k)
                     and not k.startswith("cache"))
    assert changed == [], changed  # no file changed, created or removed (eval/, shrink/ too)


def test_two_runs_claiming_one_folder_at_once(place, tmp_path):
    root, env = place
    target = tmp_path / "shared_run"
    procs = [helpers.start("train.py", [*SMOKE, f"lr={lr}", f"hydra.run.dir={target}"], tmp_path, env)
             for lr in (1e-4, 2e-4)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    (winner,) = [i for i, (code, _) in enumerate(results) if code == 0]
    config = (target / ".hydra" / "config.yaml").read_text()
    assert f"lr: {(1e-4, 2e-4)[winner]}" in config  # one run's files, not a mix
    assert [p.name for p in (target / "checkpoints").iterdir()] in (["best.ckpt", "last.ckpt"],
                                                                    ["last.ckpt", "best.ckpt"])


def test_documented_forms_work_as_typed(tmp_path):
    for args, expected in [
        (["data=files", "data.read_kwargs={encoding: latin-1}"], "encoding: latin-1"),
        (["data.read_kwargs={quoting: 3}"], "quoting: 3"),  # added to the tweets' own kwargs
        (["model.config_overrides.hidden_dropout_prob=0.2"], "hidden_dropout_prob: 0.2"),
        (["+model.config_overrides.classifier_dropout=0.3"], "classifier_dropout: 0.3"),
        (["class_weights=balanced", "loss.label_smoothing=0.1"], "class_weights: balanced"),
        (["lr=3e-5", "--cfg", "job"], "lr: 3.0e-05"),  # the flag after the overrides
    ]:
        r = command("train", [*args, "--cfg", "job"] if "--cfg" not in args else args, tmp_path)
        assert r.returncode == 0 and expected in r.stdout, (args, r.stderr[-1500:])
    assert not list(tmp_path.iterdir())  # --cfg makes no folder


def test_class_weights_and_smoothing_with_the_default_loss(make_cfg, tmp_path):
    from bertlab.training.train import train

    train(make_cfg("data.max_samples=160", "batch_size=16", "class_weights=balanced",
                   "loss.label_smoothing=0.1"))
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert m["loss"]["name"] == "CrossEntropyLoss" and len(m["loss"]["class_weights"]) == 3


def test_a_diverged_run_exits_non_zero(tmp_path):
    r = command("train", [*SMOKE, "optimizer=sgd", "lr=1e12", "trainer.gradient_clip_val=null"],
                tmp_path)
    assert r.returncode == 3, r.stderr[-2000:]
    assert r.stderr.strip().splitlines()[-1].startswith("error: training diverged")
    (run,) = (tmp_path / "outputs" / "runs").iterdir()
    assert json.loads((run / "metrics.json").read_text())["status"] == "diverged"


BEFORE_TORCH = [("train", ["lrr=1"], 2),
                ("train", ["model=tiny,minilm"], 2),
                ("train", ["data=files", "data.train_file={root}/a_folder"], 2),
                ("train", ["data=files", "data.train_file={root}/empty.csv"], 1),
                ("train", ["model.name_or_path=/nonexistent"], 2),
                ("train", ["max_length=1000"], 2),
                ("eval", ["run_dir={root}/finished", "split=nosuch"], 2),
                ("eval", ["run_dir={root}/finished", "file={root}/missing.csv"], 2),
                ("shrink", ["run_dir={root}/finished", "drop_layers=-3"], 2),
                ("export", ["run_dir={root}/finished", "out={root}/exported"], 2),
                ("train", ["--foo"], 2),
                ("train", ["data.long_text=window"], 2),
                ("train", ["data.window_pool=avg"], 2),
                ("train", ["data.task=regresion"], 2),
                ("train", ["model.peft=qlora"], 2),
                ("train", ["cv=3", "data=files", "data.train_file={root}/data.csv",
                           "data.validation_file={root}/data.csv"], 2),
                ("train", ["data=files", "data.train_file={root}/data.csv",
                           "data.unlabeled_file={root}/blank.txt"], 2),
                ("tune_lr", ["tune_lr.min_lr=1", "tune_lr.max_lr=0.1"], 2),
                ("train", ["model.name_or_path={root}/a_folder"], 2),
                ("shrink", ["run_dir={root}/finished", "int8=maybe"], 2),
                ("eval", ["run_dir={root}/finished/eval/2026-01-01_00-00-00-000000"], 2),
                ("train", ["budget.time=10 minutes"], 2),
                ("train", ["callbacks=soup", "callbacks.soup.method=best"], 2),
                ("train", ["data=files"], 2)]


@pytest.mark.parametrize("script, args, code", BEFORE_TORCH,
                         ids=[" ".join(a) for _, a, _ in BEFORE_TORCH])
def test_command_line_mistakes_answer_before_torch(place, script, args, code):
    """Mistakes that the command line, the files or the model folder show answer in a second,
    without the seconds of importing torch and Lightning."""
    root, env = place
    argv = [script + ".py", *(a.format(root=root) for a in args)]
    probe = ("import sys, runpy; sys.argv = %r\n"
             "try:\n    runpy.run_path(%r, run_name='__main__')\n"
             "except SystemExit as e:\n    print('torch' in sys.modules, e.code)\n"
             % (argv, str(ROOT / argv[0])))
    r = subprocess.run([sys.executable, "-c", probe], cwd=root, capture_output=True, text=True,
                       timeout=120, env={**os.environ, **env})
    assert r.stdout.split() == ["False", str(code)], r.stderr[-1500:]


def test_a_run_that_never_finished_is_said_when_its_checkpoint_is_used(place, tmp_path, capsys):
    """predict and eval on a killed run used its best.ckpt without a word. (In this process: the
    note is find_checkpoint's own line on stderr, the same under the command.)"""
    from helpers import compose_tool

    from bertlab.use.predict import predict

    root, _ = place
    (tmp_path / "in.txt").write_text("fine\n")

    def said(run: str) -> str:
        capsys.readouterr()
        predict(compose_tool("predict", f"run_dir={root}/{run}", f"input={tmp_path / 'in.txt'}",
                             f"output={tmp_path / run}.jsonl"))
        assert len((tmp_path / f"{run}.jsonl").read_text().splitlines()) == 1
        return capsys.readouterr().err

    assert f"note: {root}/crashed did not finish training (status: none, it was stopped)" in said("crashed")
    assert "did not finish" not in said("finished")
