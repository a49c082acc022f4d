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
    """A thread of the main process. When an inference worker is gone, the HTTP processes answer
    its requests 503 at once (lost_worker_answers). If no stop was asked (`stop`), the worker
    died on its own: its exit code goes into `exits` (serve says so in one line) and the server
    is stopped."""
    import threading
    import time

    def watch() -> None:
        while True:
            dead = [w for w in getattr(server, "inference_workers", []) if not w.is_alive()]
            if dead:
                lost.value = 1  # (also in a stop: a request must not wait for a dead worker)
                if not stop.wait(0.2):  # not a shutdown's own terminations: it died by itself
                    exits[:] = [dead[0].exitcode]
                    time.sleep(0.5)  # the waiting requests are answered 503 meanwhile
                    shut_down(server)
                return
            if stop.wait(0.2):
                return

    threading.Thread(target=watch, daemon=True, name="bertlab-watch").start()


def shut_down(server) -> None:
    """LitServe's own shutdown, started from a thread (its manager's connection is busy in the
    main thread's wait); HTTP processes left a few seconds for the requests in flight, quietly."""
    import logging
    import threading

    server.uvicorn_graceful_timeout = 5  # (LitServe's 30 s: its HTTP processes can wait that
    logging.getLogger("litserve.server").setLevel(logging.ERROR)  # long for a dead worker)
    threading.Thread(target=server._shutdown_event.set, daemon=True).start()


def stop_on_signals(server, stop) -> None:
    """SIGTERM (kill, Docker, or systemd's to every process of the unit) and SIGINT (Ctrl-C, even
    when inherited as ignored by a background job) stop the whole server the same clean way. The
    handler is inherited by the processes LitServe forks: its queues' manager ignores the signal
    (the main process shuts it down last), its HTTP processes replace it with uvicorn's own."""
    import os
    import signal

    main = os.getpid()

    def handle(signum, frame) -> None:
        if os.getpid() != main or stop.is_set():
            return
        stop.set()
        shut_down(server)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, handle)
