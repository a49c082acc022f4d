"""serve.py's process life, which LitServe leaves open: the address checked before anything is
said to be served, SIGTERM and SIGINT stopping every process of it, and a lost inference worker
answered 503 and the server stopped with one line."""
from __future__ import annotations

from bertlab.errors import ConfigError


HOSTS = {"127.0.0.1": "127.0.0.1", "localhost": "127.0.0.1", "0.0.0.0": "0.0.0.0", "::": "::"}


def check_address(host: str, port: int) -> str:
    """The address LitServe will bind, checked before anything is printed as served: a host it
    takes (localhost is 127.0.0.1), and a port that is free."""
    import socket

    if str(host) not in HOSTS:
        raise ConfigError(f"host={host} is not valid; use 127.0.0.1 (or localhost: this machine "
                          f"only), 0.0.0.0 (every IPv4 address) or :: (every address)")
    host = HOSTS[str(host)]
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # (as uvicorn binds)
        try:
            probe.bind((host, port))
        except OSError as e:
            raise ConfigError(f"port={port} cannot be used on {host} ({e.strerror}); choose "
                              f"another port=") from None
    return host


def lost_worker_answers(app, lost) -> None:
    """Requests get a 503 JSON answer once the inference worker is gone (`lost`, set by
    watch_workers), instead of waiting for an answer that will never come."""
    import asyncio

    from fastapi.responses import JSONResponse

    def gone() -> JSONResponse:
        return JSONResponse({"error": "the inference worker stopped; the server is shutting "
                                      "down, send the request again once it is restarted"},
                            status_code=503)

    @app.middleware("http")
    async def answer(request, call_next):
        if lost.value:
            return gone()
        task = asyncio.ensure_future(call_next(request))
        while not task.done():
            await asyncio.wait({task}, timeout=0.1)
            if lost.value and not task.done():
                task.cancel()
                return gone()
        return task.result()


def watch_workers(server, lost, stop, exits: list) -> None:
    """A thread of the main process: when an inference worker dies, say so in one line, let the
    HTTP processes answer its requests (lost_worker_answers), then stop the server; the
    worker's exit code goes into `exits`."""
    import logging
    import threading
    import time

    def watch() -> None:
        while not stop.is_set():
            dead = [w for w in getattr(server, "inference_workers", []) if not w.is_alive()]
            if dead and stop.wait(0.2) is False:  # (not a shutdown's own terminations)
                lost.value, exits[:] = 1, [dead[0].exitcode]
                time.sleep(0.5)  # the waiting requests are answered 503 meanwhile
                # the HTTP processes wait for answers that will never come: end them soon, quietly
                server.uvicorn_graceful_timeout = 1
                logging.getLogger("litserve.server").setLevel(logging.ERROR)
                server._shutdown_event.set()
                return
            stop.wait(0.2)

    threading.Thread(target=watch, daemon=True, name="bertlab-watch").start()


def stop_on_signals(server, stop) -> None:
    """SIGTERM (systemd, Docker, kill) and SIGINT (Ctrl-C, even when inherited as ignored by a
    background job) stop the whole server the same clean way: LitServe's shutdown event is set
    (from a thread: its manager's connection is busy in the main thread's wait), so the HTTP
    processes finish their requests before the worker and the queues go."""
    import signal
    import threading

    def handle(signum, frame) -> None:
        stop.set()
        threading.Thread(target=server._shutdown_event.set, daemon=True).start()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, handle)
