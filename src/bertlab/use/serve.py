"""serve(cfg): a trained run behind HTTP with LitServe: POST /predict, dynamic batching, /health.

Requests are checked in the HTTP process (a pydantic model), before they reach the batching
queue: LitServe answers a whole batch with the error of any one request in it, so a bad request
must never get that far.
"""

import sys
from queue import Empty
from typing import Any, ClassVar, Optional

import litserve as ls
from litserve.loops.simple_loops import BatchedLoop
from omegaconf import DictConfig
from pydantic import BaseModel, ConfigDict, model_validator

from bertlab.cli.checks import check_ranges
from bertlab.use.checks import SERVE_RANGES
from bertlab.errors import DataError
from bertlab.use.lifecycle import check_address, lost_worker_answers, stop_on_signals, watch_workers


class TextsRequest(BaseModel):
    """{"text": "..."}, {"text": "...", "text_pair": "..."}, or lists of them."""

    model_config = ConfigDict(extra="forbid")
    text: Any = None
    text_pair: Any = None
    # set by serve() before the server starts (the HTTP processes are forked from it)
    max_texts: ClassVar[int] = 256
    pairs: ClassVar[Optional[bool]] = None  # the model reads text pairs (None: not known)

    @model_validator(mode="after")
    def check(self):
        texts = self.texts("text")
        pairs = self.texts("text_pair") if self.text_pair is not None else None
        if pairs is not None and len(pairs) != len(texts):
            raise ValueError(f"text has {len(texts)} texts but text_pair has {len(pairs)}; give one "
                             f"pair per text")
        if pairs is not None and type(self.text) is not type(self.text_pair):
            raise ValueError("text and text_pair must both be strings or both lists")
        if self.pairs is True and pairs is None:
            raise ValueError("this model reads text pairs: give text_pair as well as text")
        if self.pairs is False and pairs is not None:
            raise ValueError("this model reads single texts: send text without text_pair")
        return self

    def texts(self, key: str) -> list[str]:
        value = getattr(self, key)
        if value is None:
            raise ValueError(f'no {key}: send {{"{key}": "..."}} or {{"{key}": ["...", "..."]}}')
        many = value if isinstance(value, list) else [value]
        if not all(isinstance(t, str) for t in many):
            raise ValueError(f"{key} must be a string or a list of strings")
        if not many:
            raise ValueError(f"{key} is an empty list; send at least one text")
        if len(many) > self.max_texts:
            raise ValueError(f"{len(many)} texts in one request; at most max_texts={self.max_texts}")
        if any(not t.strip() for t in many):
            raise ValueError(f"{key} holds a blank text; every text must have words")
        return many


IDLE_WAIT = 0.5  # seconds a worker waits at once for the first request of a batch


class Waiting:
    """A request queue as LitServe's batched loop reads it, with a wait for the first request:
    the loop itself asks for one every millisecond while idle (its worker and the queue's manager
    process kept busy for nothing, a core between them). The first request, once it comes, is
    handed to the loop, which gathers the batch around it as always (batch_timeout)."""

    def __init__(self, queue) -> None:
        self.queue, self.pending = queue, []

    def wait(self, seconds: float) -> bool:
        """Whether a request came within `seconds` (ends as soon as one does: no added latency)."""
        if not self.pending:
            try:
                self.pending.append(self.queue.get(True, seconds))
            except Empty:
                return False
        return True

    def get(self, block: bool = True, timeout: float | None = None):
        return self.pending.pop() if self.pending else self.queue.get(block, timeout)

    def get_nowait(self):
        return self.get(False)


class WaitingLoop(BatchedLoop):
    """LitServe's batched loop, on a Waiting queue."""

    def get_batch_requests(self, lit_api, request_queue, transport):
        if getattr(self, "waiting", None) is None or self.waiting.queue is not request_queue:
            self.waiting = Waiting(request_queue)
        if not self.waiting.wait(IDLE_WAIT):
            return [], []
        return super().get_batch_requests(lit_api, self.waiting, transport)


class TextAPI(ls.LitAPI):
    """The texts of every request in a batch go through one predict_texts call."""

    def __init__(self, run_dir: str, backend: str, precision: str, threshold: float | None,
                 threads: int | None, log_batches: bool, **batching) -> None:
        super().__init__(**batching)
        self.run_dir, self.backend, self.precision = run_dir, backend, precision
        self.threshold, self.threads, self.log_batches = threshold, threads, log_batches

    def setup(self, device) -> None:
        import signal

        import torch

        # Ctrl-C reaches every process of the group; the server's main process stops this one.
        # Left to it, the worker would print a KeyboardInterrupt traceback as it goes.
        signal.signal(signal.SIGINT, signal.SIG_IGN)

        from bertlab.models.inference import load_predictor

        if self.threads:
            torch.set_num_threads(self.threads)
        self.model, self.tokenizer = load_predictor(self.run_dir, None, self.backend)
        self.device = "cpu" if self.backend == "onnx" else device  # LitServe's: cpu or cuda:N
        if self.backend == "torch":
            self.model.to(self.device)

    def decode_request(self, request: TextsRequest, context: dict) -> dict:
        context["one"] = isinstance(request.text, str)  # answer an object, not a list
        pairs = request.texts("text_pair") if request.text_pair is not None else None
        return {"texts": request.texts("text"), "pairs": pairs}

    def batch(self, inputs: list[dict]) -> list[dict]:
        return inputs

    def predict(self, requests: list[dict]) -> list[list[dict]]:
        from bertlab.models.inference import scored_rows

        if self.log_batches:
            print(f"batch: {len(requests)} requests, {sum(len(r['texts']) for r in requests)} texts",
                  file=sys.stderr, flush=True)
        out = [None] * len(requests)
        for paired in (False, True):  # (a model of unknown kind may get both)
            group = [i for i, r in enumerate(requests) if (r["pairs"] is not None) == paired]
            if not group:
                continue
            texts = [t for i in group for t in requests[i]["texts"]]
            pairs = [p for i in group for p in requests[i]["pairs"]] if paired else None
            found, _ = scored_rows(self.model, self.tokenizer, texts, self.threshold, batch_size=64,
                                   precision=self.precision, pairs=pairs, device=self.device)
            rows = iter(found)
            for i in group:
                out[i] = [{k: v for k, v in next(rows).items() if k != "text"}
                          for _ in requests[i]["texts"]]
        return out

    def unbatch(self, outputs: list) -> list:
        return outputs

    def encode_response(self, output: list[dict], context: dict) -> dict:
        return output[0] if context["one"] else {"predictions": output}


def reads_pairs(run_dir: str, backend: str) -> bool | None:
    """Whether the model was trained on text pairs, if its folder says."""
    import json

    if backend == "onnx":
        from bertlab.models.onnx_network import onnx_folder

        return json.loads((onnx_folder(run_dir) / "bertlab.json").read_text()).get("pair")
    from bertlab.cli.runs import trained_on_pairs

    return trained_on_pairs(run_dir)


def one_line_errors(app, max_body_bytes: int) -> None:
    """Every 4xx as {"error": "<one line>"}: FastAPI's validation lists, LitServe's and
    Starlette's HTTP errors (413 body too large, 404, 405) alike."""
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException

    def validation(request, exc: RequestValidationError) -> JSONResponse:
        if "json" not in request.headers.get("content-type", "application/json"):
            return JSONResponse({"error": "send the body as JSON (Content-Type: application/json)"},
                                status_code=415)
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        message = str(first.get("msg", "bad request")).removeprefix("Value error, ")
        if first.get("type") == "extra_forbidden":
            message = f"unknown field {where!r}; send text (and text_pair)"
        elif first.get("type") == "json_invalid":
            message = "the body is not valid JSON"
        elif first.get("type") == "model_attributes_type":
            message = 'the body must be a JSON object such as {"text": "..."}'
        return JSONResponse({"error": message}, status_code=400)

    def http(request, exc: HTTPException) -> JSONResponse:
        message = (f"the body is over max_body_bytes={max_body_bytes}" if exc.status_code == 413
                   else str(exc.detail))
        return JSONResponse({"error": message}, status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    app.add_exception_handler(RequestValidationError, validation)
    app.add_exception_handler(HTTPException, http)


def serve(cfg: DictConfig) -> None:
    import multiprocessing as mp
    import threading

    from bertlab.hardware import check_cuda, uses_cuda
    from bertlab.models.inference import check_backend, check_threshold, inference_precision

    check_backend(cfg.backend, str(cfg.precision))
    check_threshold(cfg.threshold)
    check_cuda(cfg.accelerator, "accelerator", "accelerator=auto (a GPU when there is one) or cpu")
    cuda = cfg.backend == "torch" and uses_cuda(cfg)
    precision, why = inference_precision(str(cfg.precision), cfg.backend, cuda)
    check_ranges(cfg, SERVE_RANGES)
    if cfg.backend == "torch":  # the run's checkpoint is there (found before any worker starts)
        from bertlab.models.checkpoints import checkpoint_hparams, find_checkpoint
        from bertlab.models.inference import model_precision

        hparams = checkpoint_hparams(find_checkpoint(cfg.run_dir))[1]
        precision, why = model_precision(hparams, precision, why, str(cfg.precision))
        task = hparams["task"]
    else:
        import json

        from bertlab.models.onnx_network import onnx_folder

        task = json.loads((onnx_folder(cfg.run_dir) / "bertlab.json").read_text())["task"]
    from bertlab.models.inference import check_threshold_applies

    check_threshold_applies(cfg.threshold, task)
    host = check_address(cfg.host, cfg.port)
    TextsRequest.max_texts = cfg.max_texts
    TextsRequest.pairs = reads_pairs(str(cfg.run_dir), cfg.backend)
    api = TextAPI(str(cfg.run_dir), cfg.backend, precision, cfg.threshold, cfg.threads,
                  cfg.log_batches, max_batch_size=cfg.max_batch_size,
                  batch_timeout=float(cfg.batch_timeout),
                  loop=WaitingLoop() if cfg.max_batch_size > 1 else "auto")
    server = ls.LitServer(api, accelerator="cpu" if cfg.backend == "onnx" else cfg.accelerator,
                          workers_per_device=cfg.workers, max_payload_size=cfg.max_body_bytes,
                          timeout=cfg.timeout)
    server._monitor_workers = False  # its monitor shuts down from a thread, and the main
    # process then dies on the closed manager (EOFError); watch_workers does the job instead
    one_line_errors(server.app, cfg.max_body_bytes)
    lost, stop = mp.RawValue("i", 0), threading.Event()  # (RawValue: no semaphore to leak)
    lost_worker_answers(server.app, lost)
    stop_on_signals(server, stop)
    exits: list = []
    watch_workers(server, lost, stop, exits)
    print(f"serving {cfg.run_dir} ({cfg.backend}, precision {precision}: {why}) on "
          f"http://{cfg.host}:{cfg.port}/predict", file=sys.stderr)
    # the resource tracker (a process of its own, started by the run) takes -W options: its
    # "leaked semaphore" note at shutdown is about LitServe's queues, nothing a user can act on
    sys.warnoptions.append("ignore:resource_tracker:UserWarning")
    server.run(host=host, port=cfg.port, generate_client_file=False, log_level="warning")
    stop.set()
    if exits:  # (the worker died by itself; one gone in an asked-for stop only set `lost`)
        raise DataError(f"the inference worker stopped (exit code {exits[0]}); the server "
                        f"stopped too, its waiting requests answered 503: start it again")
