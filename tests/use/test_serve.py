"""Where a trained run goes: ONNX export with both predict backends, and the LitServe server."""
from __future__ import annotations

import importlib
import json
import os
import re
import signal
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
import torch

from conftest import sentences
from helpers import compose_tool, predictions, start, tool, trained
import prewarmed

TEXTS = ["what a great day", "this is awful", "the car drives itself", "fine"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return trained(tmp_path_factory)


@pytest.fixture(scope="module")
def pair_run(tmp_path_factory):
    """A run trained on text pairs, exported to ONNX."""
    import pandas as pd

    rows = sentences(120)
    path = tmp_path_factory.mktemp("pairs") / "pairs.csv"
    pd.DataFrame({"text": [t for t, _ in rows], "label": [y for _, y in rows],
                  "hypothesis": [f"it was {'good' if i % 3 else 'bad'}" for i in range(120)]}
                 ).to_csv(path, index=False)
    run = trained(tmp_path_factory, "data=files", f"data.train_file={path}",
                  "data.text_pair_column=hypothesis")
    from bertlab.use.export import export

    export(compose_tool("export", f"run_dir={run}", "format=onnx"))
    return run


def predict(run_dir, tmp_path, name, *args):
    """predict.py's rows for in.txt (in this process: test_use runs its command line)."""
    from bertlab.use.predict import predict as run

    out = tmp_path / f"{name}.jsonl"
    run(compose_tool("predict", f"run_dir={run_dir}", f"input={tmp_path / 'in.txt'}", f"output={out}", *args))
    return predictions(out)


def probabilities(rows):
    return torch.tensor([[v for k, v in row.items() if k.startswith("p_")] for row in rows])


def result_rows(model, tokenizer, texts):
    from bertlab.models.inference import predict_texts, result_rows

    return result_rows(model, texts, predict_texts(model, tokenizer, texts), 0.5)


def test_onnx_export_predicts_as_the_checkpoint_does(run_dir, tmp_path):
    from bertlab.models.inference import load_predictor

    (tmp_path / "in.txt").write_text("\n".join(TEXTS * 10))
    from bertlab.errors import ConfigError
    from bertlab.use.export import export

    r = tool("export.py", f"run_dir={run_dir}", "format=onnx")  # the command line once
    assert r.returncode == 0, r.stderr[-2000:]
    export(compose_tool("export", f"run_dir={run_dir}", "format=onnx", "int8=true"))
    fp32, int8 = run_dir / "onnx", run_dir / "onnx_int8"
    meta = json.loads((fp32 / "bertlab.json").read_text())
    assert meta["labels"] == ["negative", "neutral", "positive"] and meta["task"] == "classification"
    assert (fp32 / "tokenizer.json").is_file() and meta["int8"] is False
    assert (int8 / "model.onnx").stat().st_size < 0.5 * (fp32 / "model.onnx").stat().st_size

    onnx = predict(run_dir, tmp_path, "onnx", "backend=onnx")  # the run's onnx/ export
    texts = (tmp_path / "in.txt").read_text().splitlines()
    ours = result_rows(*load_predictor(run_dir, None, "torch"), texts)
    quantised = result_rows(*load_predictor(int8, None, "onnx"), texts)  # an export folder itself
    assert [r["label"] for r in onnx] == [r["label"] for r in ours]
    assert (probabilities(onnx) - probabilities(ours)).abs().max() < 1e-4
    assert (probabilities(quantised) - probabilities(ours)).abs().max() < 0.05  # int8 weights
    assert not torch.equal(probabilities(quantised), probabilities(onnx))  # really quantised

    with pytest.raises(ConfigError, match="exists already"):  # never over an existing folder
        export(compose_tool("export", f"run_dir={run_dir}", "format=onnx"))


def test_onnx_dynamic_axes_take_any_batch_and_length(run_dir):
    from bertlab.models.onnx_network import OnnxNetwork, onnx_folder
    from bertlab.models.inference import predict_texts
    from bertlab.models.checkpoints import find_checkpoint, load_network
    from transformers import AutoTokenizer

    if not (run_dir / "onnx").exists():
        assert tool("export.py", f"run_dir={run_dir}", "format=onnx").returncode == 0
    model = load_network(find_checkpoint(str(run_dir)))
    tok = AutoTokenizer.from_pretrained(model.hparams.model["tokenizer"])
    onnx = OnnxNetwork(onnx_folder(run_dir))
    texts = ["x", "a much longer text than the ones it was exported with, " * 8] + TEXTS * 20
    for batch_size in (1, 3, 64):
        expected = predict_texts(model, tok, texts, batch_size)
        assert (predict_texts(onnx, tok, texts, batch_size) - expected).abs().max() < 1e-4


@pytest.mark.parametrize("args, words", [
    (["format=tflite", "out={tmp}/o"], "format=tflite is not valid; use hf or onnx"),
    (["int8=true", "out={tmp}/o"], "int8=true is for format=onnx"),
    (["format=hf"], "give out=<new folder>"),
])
def test_export_mistakes_are_one_line(run_dir, tmp_path, args, words):
    r = tool("export.py", f"run_dir={run_dir}", *[a.format(tmp=tmp_path) for a in args])
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1].startswith(f"error: {words}")
    assert "Traceback" not in r.stderr and not (tmp_path / "o").exists()


@pytest.mark.parametrize("args, words", [
    (["backend=tf"], "backend=tf is not valid; use torch or onnx"),
    (["backend=onnx", "precision=bf16"], "precision=bf16 is for backend=torch"),
    (["backend=onnx", "explain=true"], "explain=true needs gradients"),
    (["backend=onnx", "ckpt_path=x.ckpt"], "ckpt_path is for backend=torch"),
    (["backend=onnx", "run_dir={tmp}"], "holds no ONNX model; write one with python export.py"),
    (["threshold=0"], "threshold=0 is not valid; use a probability in (0, 1), or null"),
])
def test_predict_backend_mistakes(run_dir, tmp_path, args, words):
    from bertlab.errors import ConfigError
    from bertlab.use.predict import predict

    (tmp_path / "in.txt").write_text("good\n")
    cfg = compose_tool("predict", f"run_dir={run_dir}", f"input={tmp_path / 'in.txt'}",
                       f"output={tmp_path / 'o.jsonl'}", *[a.format(tmp=tmp_path) for a in args])
    with pytest.raises(ConfigError, match=re.escape(words)):
        predict(cfg)
    assert not (tmp_path / "o.jsonl").exists()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """serve.py in its own process group on a free port; stopped (Ctrl-C) by the test."""

    def __init__(self, log: Path, *args: str, ctrl_c_ignored=False) -> None:
        self.port, self.log = free_port(), log
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = start("serve.py", [f"port={self.port}", *args], Path.cwd(), new_session=True,
                          log=log, ctrl_c_ignored=ctrl_c_ignored)
        deadline = time.time() + 120
        while time.time() < deadline:
            assert self.proc.poll() is None, log.read_text()[-3000:]
            try:
                if requests.get(f"{self.url}/health", timeout=1).text == "ok":
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.5)
        raise AssertionError(f"server did not come up: {log.read_text()[-3000:]}")

    def post(self, body=None, **kw) -> requests.Response:
        return requests.post(f"{self.url}/predict", json=body, timeout=60, **kw)

    def stop(self) -> None:
        """Ctrl-C: the server stops by itself, cleanly (exit status 0)."""
        os.killpg(self.proc.pid, signal.SIGINT)
        try:
            code = self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:  # (a clean stop takes about a second)
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            raise AssertionError(f"the server did not stop on Ctrl-C: {self.log.read_text()[-2000:]}")
        assert code == 0 and "Traceback" not in self.log.read_text(), self.log.read_text()[-2000:]


@pytest.fixture(scope="module")
def server(run_dir, tmp_path_factory):
    """One server for this module's requests, stopped as `kill <pid>` stops it: SIGTERM to its
    main process alone (test_a_signal_stops_every_process_of_the_server_and_frees_its_port's first
    case; Ctrl-C: Server.stop, by the pairs server)."""
    s = Server(tmp_path_factory.mktemp("serve") / "server.log", f"run_dir={run_dir}",
               "max_batch_size=8", "batch_timeout=0.3", "max_texts=16", "max_body_bytes=20000",
               "log_batches=true", "threads=1", "precision=32", "host=localhost")
    yield s
    signal_stops_every_process(s, "sigterm")


def test_server_answers_as_predict_does(server, run_dir, tmp_path):
    (tmp_path / "in.txt").write_text("\n".join(TEXTS))
    expected = predict(run_dir, tmp_path, "torch", "precision=32")
    one = server.post({"text": TEXTS[0]})
    assert one.status_code == 200
    assert set(one.json()) == {"label", "confidence", "p_negative", "p_neutral", "p_positive"}
    assert one.json()["label"] == expected[0]["label"]
    assert one.json()["p_positive"] == pytest.approx(expected[0]["p_positive"], abs=1e-5)
    many = server.post({"text": TEXTS})
    assert many.status_code == 200
    got = many.json()["predictions"]
    assert [r["label"] for r in got] == [r["label"] for r in expected]
    assert (probabilities(got) - probabilities(expected)).abs().max() < 1e-5


def test_concurrent_requests_are_batched(server):
    batches = lambda: [int(line.split()[1]) for line in server.log.read_text().splitlines()  # noqa: E731
                       if line.startswith("batch: ")]
    before = len(batches())
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda t: server.post({"text": t}), TEXTS * 4))
    assert all(a.status_code == 200 for a in answers)
    alone = {t: server.post({"text": t}).json()["label"] for t in TEXTS}
    assert [a.json()["label"] for a in answers] == [alone[t] for t in TEXTS * 4]
    sizes = batches()[before:]
    assert max(sizes) > 1 and sum(sizes) == 16 + 4, sizes


@pytest.mark.parametrize("body, kw, status, words", [
    ({}, {}, 400, "no text: send"),
    ({"text": 5}, {}, 400, "text must be a string or a list of strings"),
    ({"text": ["good", 3]}, {}, 400, "text must be a string or a list of strings"),
    ({"text": []}, {}, 400, "empty list"),
    ({"text": "   "}, {}, 400, "blank text"),
    ({"text": ["good"] * 17}, {}, 400, "17 texts in one request; at most max_texts=16"),
    ({"texts": ["good"]}, {}, 400, "unknown field 'texts'"),
    ({"text": "good", "text_pair": "bad"}, {}, 400, "this model reads single texts"),
    ([1, 2], {}, 400, "must be a JSON object"),
    (None, {"data": "{not json", "headers": {"Content-Type": "application/json"}}, 400, "not valid JSON"),
    (None, {"data": {"text": "good"}}, 415, "Content-Type: application/json"),
    ({"text": "good " * 5000}, {}, 413, "over max_body_bytes=20000"),
])
def test_bad_requests_get_one_line_and_the_server_goes_on(server, body, kw, status, words):
    r = server.post(body, **kw) if body is not None else requests.post(
        f"{server.url}/predict", timeout=60, **kw)
    assert r.status_code == status, r.text
    assert set(r.json()) == {"error"} and words in r.json()["error"] and "\n" not in r.json()["error"]
    assert server.post({"text": "good"}).status_code == 200


def test_onnx_server_takes_text_pairs(pair_run, tmp_path):
    from bertlab.models.onnx_network import OnnxNetwork, onnx_folder
    from bertlab.models.inference import predict_texts
    from transformers import AutoTokenizer

    onnx = OnnxNetwork(onnx_folder(pair_run))
    tok = AutoTokenizer.from_pretrained(str(onnx_folder(pair_run)))
    assert json.loads((onnx_folder(pair_run) / "bertlab.json").read_text())["pair"] is True
    texts, pairs = TEXTS[:2], ["it was good", "it was bad"]
    expected = predict_texts(onnx, tok, texts, pairs=pairs)
    assert not torch.allclose(expected, predict_texts(onnx, tok, texts))  # the pair is read
    s = Server(tmp_path / "server.log", f"run_dir={pair_run}", "backend=onnx", "threads=1")
    try:
        one = s.post({"text": texts[0], "text_pair": pairs[0]}).json()
        assert one["p_positive"] == pytest.approx(float(expected[0, 1]), abs=1e-5)
        many = s.post({"text": texts, "text_pair": pairs}).json()["predictions"]
        assert (probabilities(many) - expected).abs().max() < 1e-5
        r = s.post({"text": "good"})
        assert r.status_code == 400 and "reads text pairs" in r.json()["error"]
    finally:
        s.stop()


@pytest.mark.parametrize("args, words", [
    (["backend=onnx", "run_dir={tmp}"], "holds no ONNX model"),
    (["run_dir={tmp}"], "has no checkpoints/best.ckpt"),
    (["max_batch_size=0", "run_dir={run}"], "max_batch_size=0 is not valid"),
    (["batch_timeout=-1", "run_dir={run}"], "batch_timeout=-1 is not valid"),
    (["threads=-1", "run_dir={run}"], "threads=-1 is not valid; use a positive integer"),
    (["timeout=0", "run_dir={run}"], "timeout=0 is not valid; use seconds > 0"),
    (["log_batches=yes", "run_dir={run}"], "log_batches='yes' is not valid; use true or false"),
    (["precision=fp8", "run_dir={run}"], "precision=fp8 is not valid"),
    (["threshold=1.5", "run_dir={run}"], "threshold=1.5 is not valid; use a probability in (0, 1)"),
])
def test_serve_mistakes(run_dir, tmp_path, args, words):
    from bertlab.errors import BertlabError
    from bertlab.use.serve import serve

    with pytest.raises(BertlabError, match=re.escape(words)):  # before any server starts
        serve(compose_tool("serve", *[a.format(tmp=tmp_path, run=run_dir) for a in args]))


def test_serve_mistake_is_one_line(tmp_path):
    r = tool("serve.py", f"run_dir={tmp_path}")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("error: ") and "has no checkpoints" in r.stderr


@pytest.mark.parametrize("package, extra, call", [
    ("litserve", "serve", lambda run: importlib.import_module("bertlab.use.checks").check_serve(None)),
    ("onnxruntime", "onnx", lambda run: importlib.import_module("bertlab.models.inference").load_predictor(
        run, None, "onnx")),
])
def test_a_missing_extra_is_one_line(run_dir, monkeypatch, package, extra, call):
    import importlib.util

    from bertlab.errors import ConfigError

    if not (run_dir / "onnx").exists():
        assert tool("export.py", f"run_dir={run_dir}", "format=onnx").returncode == 0
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == package else real(n, *a))
    with pytest.raises(ConfigError, match=rf"needs the {package} package.*\.\[{extra}\]"):
        call(run_dir)


def test_precision_auto_follows_the_hardware(monkeypatch):
    from bertlab import hardware as plugins
    from bertlab.models.inference import inference_precision

    monkeypatch.setattr(plugins, "hardware", lambda cuda: {"cpu_flags": ["avx512_bf16"]})
    assert inference_precision("auto", "torch")[0] == "bf16"
    assert inference_precision("auto", "onnx")[0] == "32"  # ONNX Runtime runs the export as is
    assert inference_precision("32", "torch")[0] == "32"  # an explicit value wins
    monkeypatch.setattr(plugins, "hardware", lambda cuda: {"cpu_flags": []})
    assert inference_precision("auto", "torch") == ("32", plugins.choose_precision("auto", {})[1])
    monkeypatch.setattr(plugins, "hardware", lambda cuda: {"cuda": "A100", "capability": (8, 0)})
    assert inference_precision("auto", "torch", cuda=True)[0] == "bf16"


def group_alive(pgid: int) -> list[int]:
    """The processes still in the server's process group (its HTTP processes, worker, queues)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def stopped_within(server: Server, seconds: float) -> int:
    """The server's exit code, once every process of it has gone; fails after `seconds`."""
    deadline = time.time() + seconds
    while time.time() < deadline and (server.proc.poll() is None or group_alive(server.proc.pid)):
        time.sleep(0.2)
    left = group_alive(server.proc.pid)
    if server.proc.poll() is None or left:
        os.killpg(server.proc.pid, signal.SIGKILL)
        raise AssertionError(f"still running after {seconds} s: {left}; {server.log.read_text()[-2000:]}")
    return server.proc.returncode


@pytest.mark.parametrize("how", ["sigterm-to-the-group", "sigint-to-the-group"])
def test_a_signal_stops_every_process_of_the_server_and_frees_its_port(run_dir, tmp_path, how):
    """SIGTERM to the main process (kill, Docker; the `server` fixture's stop) ended it alone: two
    HTTP processes and the worker kept the port. SIGTERM to every process (systemd's default) must
    not kill the queues' manager under the others (tracebacks). SIGINT to the group, inherited as
    ignored, left a server that answered nothing and never exited."""
    s = Server(tmp_path / "server.log", f"run_dir={run_dir}", "threads=1", "host=localhost",
               ctrl_c_ignored=how.startswith("sigint"))
    signal_stops_every_process(s, how)


def signal_stops_every_process(s: Server, how: str) -> None:
    assert s.post({"text": "good"}).status_code == 200
    assert len(group_alive(s.proc.pid)) >= 3  # main, HTTP, worker (and the queues' manager)
    if how == "sigterm":
        s.proc.send_signal(signal.SIGTERM)
    else:
        os.killpg(s.proc.pid, signal.SIGTERM if how.startswith("sigterm") else signal.SIGINT)
    assert stopped_within(s, 20) == 0
    assert port_free(s.port)
    log = s.log.read_text()
    assert "Traceback" not in log and "leaked semaphore" not in log, log[-2000:]


def test_a_lost_worker_answers_503_and_the_server_exits_with_one_line(run_dir, tmp_path):
    s = Server(tmp_path / "server.log", f"run_dir={run_dir}", "threads=1")
    assert s.post({"text": "good"}).status_code == 200
    worker = next(pid for pid in group_alive(s.proc.pid)
                  if b"spawn_main" in prewarmed.command_line(pid))
    os.kill(worker, signal.SIGKILL)
    started = time.time()
    r = s.post({"text": "good"})  # (waited ~30 s for nothing, then closed with no answer)
    assert r.status_code == 503 and "inference worker stopped" in r.json()["error"]
    assert time.time() - started < 10
    assert stopped_within(s, 20) == 1
    assert port_free(s.port)
    lines = s.log.read_text().strip().splitlines()
    assert lines[-1].startswith("error: the inference worker stopped (exit code -9)"), lines
    assert "Traceback" not in s.log.read_text()


@pytest.mark.parametrize("args, words", [
    (["port={busy}"], "port={busy} cannot be used on 127.0.0.1 (Address already in use); choose "
                      "another port="),
    (["port=80"], "port=80 is not valid; use a port in 1024..65535"),
    (["port=70000"], "port=70000 is not valid; use a port in 1024..65535"),
    (["host=example.org"], "host=example.org is not valid; use 127.0.0.1 (or localhost"),
    (["threshold=0.3"], "threshold=0.3 is for multi-label runs; this run is classification"),
])
def test_address_mistakes_are_one_line_before_serving(run_dir, args, words):
    """A port in use printed "serving ... on :8123", then exited 3; port=80, port=70000 and
    host=localhost were tracebacks. The busy port through the command line, the rest in-process
    (the same error; run_task prints it as that one line)."""
    from bertlab.errors import ConfigError
    from bertlab.use.serve import serve

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        args = [a.format(busy=port) for a in args]
        words = words.format(busy=port)
        if args[0].startswith("port=") and str(port) in args[0]:
            r = tool("serve.py", f"run_dir={run_dir}", *args)
            assert r.returncode == 2 and r.stderr.strip().splitlines()[-1] == f"error: {words}", r.stderr
            assert "serving" not in r.stderr and "Traceback" not in r.stderr
        else:
            with pytest.raises(ConfigError, match=re.escape(words)):
                serve(compose_tool("serve", f"run_dir={run_dir}", *args))
