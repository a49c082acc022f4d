"""Commands started from a Python that has already imported torch, Lightning and transformers.

Importing them takes 10-12 s of CPU on a 2-core machine without AVX-512, most of what a small
command the tests run costs, and `make test` starts dozens. Run as a script, this file imports
them once and then forks a copy of itself for each command it is sent (no library starts
processes like this, so it is written here). The copy runs the script as `python script args`
would: the same argv, sys.path[0], working folder, environment, stdin, stdout and stderr, session
and exit status, with its own random state; only the imports are done already (and conf/'s files
parsed: Hydra's parse of a file is kept while the file is unchanged). A Python the command
starts in turn (Lightning's second DDP process, multiprocessing spawn's worker) is handed to a
spare copy forked beside it (_spare). A command whose environment differs from this process's in a
variable read at import (HF_*, TORCH*, ...) starts cold, and so do tests about imports or a first
start's output (`subprocess` directly).
"""
from __future__ import annotations

import atexit
import copy
import gc
import io
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# read by the pre-imported libraries or by Python itself when they load: a command that sets one
# differently from this process starts cold
AT_IMPORT = ("HF_", "HUGGINGFACE", "TRANSFORMERS", "TORCH", "PYTORCH", "CUDA", "OMP_", "MKL",
             "KMP_", "TOKENIZERS", "PL_", "LIGHTNING", "PYTHON", "LANG", "LC_", "HYDRA", "NCCL",
             "TQDM", "NUMEXPR", "OPENBLAS", "SCIPY", "NUMPY", "LD_", "ACCELERATE", "ARROW", "ONNX",
             "LITSERVE", "TENSORBOARD", "TF_", "PEFT")


# what the commands import on the way to their work (the libraries, and the tasks' modules that
# pull in datasets, the schedulers, tensorboard, litserve and onnx: 2-4 s of a command's CPU more)
PREIMPORTED = ("torch", "lightning", "transformers", "torchmetrics", "hydra.compose",
               "bertlab.cli.entry", "bertlab.training.train", "bertlab.training.tune",
               "transformers.optimization", "torch.utils.tensorboard", "bertlab.use.evaluate",
               "bertlab.use.predict", "bertlab.use.export", "bertlab.use.serve", "bertlab.use.shrink",
               "bertlab.label_issues.find", "onnx")


def parse_config_files_once() -> None:
    """Hydra reads and parses every YAML file again at each compose: half of its 0.39 s, and each
    command composes twice. Keep each file's parse in this process (keyed by its path, size and
    modification time, so that a changed file is read again) and hand out deep copies."""
    from hydra._internal.sources_registry import SourcesRegistry
    from hydra.core.plugins import Plugins

    Plugins.instance()  # (its scan loads the config source modules again: patch the classes it keeps)
    FileConfigSource = SourcesRegistry.instance().resolve("file")
    ImportlibResourcesConfigSource = SourcesRegistry.instance().resolve("pkg")
    parsed = {}

    def once(load, key_of):
        def load_config(self, config_path):
            key = key_of(self, config_path)
            if key is None:
                return load(self, config_path)
            if key not in parsed:
                parsed[key] = load(self, config_path)
            return copy.deepcopy(parsed[key])
        return load_config

    def file_key(source, config_path):
        full = os.path.realpath(os.path.join(source.path, source._normalize_file_name(config_path)))
        if not os.path.isfile(full):
            return None  # (Hydra's own error)
        stat = os.stat(full)
        return full, stat.st_mtime_ns, stat.st_size

    FileConfigSource.load_config = once(FileConfigSource.load_config, file_key)
    ImportlibResourcesConfigSource.load_config = once(  # (Hydra's packaged configs)
        ImportlibResourcesConfigSource.load_config, lambda source, path: (source.path, path))


def _parse_conf() -> None:
    """Each config file of conf/ parsed, and each command's config composed, once here: a copy
    reads none of them again."""
    from hydra import compose, initialize_config_dir
    from hydra._internal.sources_registry import SourcesRegistry

    parse_config_files_once()
    conf = Path(__file__).resolve().parents[1] / "conf"
    with initialize_config_dir(str(conf), version_base="1.3"):
        for primary in sorted(conf.glob("*.yaml")):
            compose(primary.stem, return_hydra_config=True)
    source = SourcesRegistry.instance().resolve("file")("main", str(conf))
    for path in sorted(conf.rglob("*.yaml")):
        source.load_config(str(path.relative_to(conf)))


def _serve() -> dict:
    """Read one request per line on stdin; fork a child for each and return the request in it.
    The parent answers the child's pid, then `<pid> <exit status>` when it ends."""
    import importlib

    for name in PREIMPORTED:
        importlib.import_module(name)
    _parse_conf()

    gc.freeze()  # (a pre-fork server's custom: no collection in a child touches, so copies, these pages)
    os.write(1, b"ready\n")
    buf, live = b"", set()
    while True:
        ready, _, _ = select.select([0], [], [], 0.05)
        for pid in list(live):
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                live.discard(pid)
                os.write(1, f"{pid} {os.waitstatus_to_exitcode(status)}\n".encode())
        if not ready:
            continue
        chunk = os.read(0, 1 << 16)
        if not chunk:  # the test process ended
            os._exit(0)
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            req = json.loads(line)
            pid = os.fork()
            if pid == 0:
                return req
            live.add(pid)
            os.write(1, f"{pid}\n".encode())


def _become(req: dict) -> None:
    """Turn the forked child into the requested command's process."""
    if req["new_session"]:
        os.setsid()
    if req["ctrl_c_ignored"]:  # (as a background job inherits it: Python then leaves it ignored)
        ignore_ctrl_c()
    for fd, path, flags in ((0, req["stdin"], os.O_RDONLY),
                            (1, req["stdout"], os.O_WRONLY | os.O_CREAT | os.O_APPEND),
                            (2, req["stderr"], os.O_WRONLY | os.O_CREAT | os.O_APPEND)):
        opened = os.open(path, flags, 0o600)
        os.dup2(opened, fd)
        os.close(opened)
    _as_started(req["cwd"], req["env"], [req["script"], *req["args"]], req["script"])


def _as_started(cwd: str, env: dict, argv: list, script: str | None) -> None:
    """What a new Python started in `cwd` with `env` and `argv` has: that folder, environment,
    its own random state, sys.argv, and sys.path[0] (the script's folder, from `cwd`; "" for -c)."""
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    _reseed()
    sys.argv = argv
    sys.path[0] = "" if script is None else os.path.dirname(os.path.abspath(script))


# what a command's libraries set in its environment for the processes it starts, none read at
# import: Lightning's seed_everything (read when called), train.py's tokenizers switch (read at
# each batch), scikit-learn's for Intel's OpenMP (these wheels load GNU's)
SET_FOR_CHILDREN = ("PL_GLOBAL_SEED", "PL_SEED_WORKERS", "TOKENIZERS_PARALLELISM",
                    "KMP_DUPLICATE_LIB_OK", "KMP_INIT_AT_FORK")


def _spare(spares: str) -> None:
    """Fork a copy of the command before its script runs: a spare that waits to become a Python
    the command starts (cold: 10-15 s of imports), a script as `subprocess.Popen([sys.executable,
    script, ...])` with nothing else asked (Lightning's second DDP process) or a process of
    multiprocessing's spawn (litserve's inference worker). It is the command's own child, in its
    session and process group, with the standard streams and passed descriptors the command has
    then, and the environment and folder it gives; one never called ends, unseen, with the
    command. Any other start, or a second one, runs as it would."""
    import socket

    ours, its = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    pid = os.fork()
    if pid == 0:
        ours.close()
        _wait_and_become(its, spares)
    its.close()
    _hand_starts_to(pid, ours)


def _wait_and_become(its, spares: str) -> None:
    """The spare's side: become the start the command hands over, or end with the command."""
    import fcntl
    import signal
    import socket
    import warnings

    signal.signal(signal.SIGINT, signal.SIG_DFL)  # (a Ctrl-C to the group: gone, silently)
    msg, fds, _, _ = socket.recv_fds(its, 1 << 20, 1024)
    if not msg:  # the command ended without it
        os._exit(0)
    its.close()
    req = json.loads(msg)
    with open(os.path.join(spares, str(os.getpid())), "wb") as f:  # (for command_line)
        f.write(b"".join(os.fsencode(a) + b"\0" for a in req["command"]))
    targets = [0, 1, 2, *req["pass_fds"]]
    above = [fcntl.fcntl(fd, fcntl.F_DUPFD, max(targets) + 1) for fd in fds]  # (out of the way)
    for fd in fds:
        os.close(fd)
    for target, fd in zip(targets, above):
        os.dup2(fd, target)  # (inheritable, as Popen's and spawn's passed descriptors are)
        os.close(fd)
    signal.signal(signal.SIGINT, signal.SIG_IGN if req["sigint_ignored"] else
                  signal.default_int_handler)  # (what a new Python starts with)
    added = [w for w in req["warnoptions"] if w not in sys.warnoptions]
    sys.warnoptions[:] = req["warnoptions"]
    warnings._processoptions(added)  # (-W options: what Python does with them at its start)
    script = req["args"][0] if req["code"] is None else None  # (else python -c code args)
    _as_started(req["cwd"], req["env"], req["args"] if script else ["-c", *req["args"]], script)
    _run_and_exit(sys.argv[0], req["code"])


def _hand_starts_to(spare: int, ours) -> None:
    """The command's side: subprocess.Popen and spawn hand the first start they can to the spare."""
    import multiprocessing.util
    import signal
    import socket

    command, interpreter = os.getpid(), subprocess._args_from_interpreter_flags()
    env = _at_import({k: v for k, v in os.environ.items() if k not in SET_FOR_CHILDREN})

    def hand_over(args: list, cwd, given: dict, pass_fds=()) -> int | None:
        """The spare's pid, become `args`; None: not a start it can take."""
        nonlocal ours
        args = [os.fsdecode(a) for a in args]
        if ours is None or os.getpid() != command or args[0] != sys.executable or not all(
                isinstance(x, str) for x in (*given, *given.values())) or _at_import(
                {k: v for k, v in given.items() if k not in SET_FOR_CHILDREN}) != env:
            return None  # (bytes in an environment: started as asked)
        i = 1
        while i < len(args) and args[i].startswith("-") and args[i] not in ("-c", "-m", "-"):
            i += 1
        flags, run = args[1:i], args[i:]
        if not {f for f in flags if not f.startswith("-W")} <= set(interpreter):
            return None  # (its flags come from PYTHON* variables, the same here: any others differ)
        if run[:1] == ["-c"] and len(run) > 2 and run[-1] == "--multiprocessing-fork":
            code, rest = run[1], run[2:]  # (spawn's process; not its resource tracker)
        elif run and run[0].endswith(".py") and not run[0].startswith("-"):
            code, rest = None, run
        else:
            return None
        req = dict(command=args, args=rest, code=code, env=given,
                   cwd=os.path.abspath(os.fsdecode(cwd) if cwd else os.getcwd()), pass_fds=list(pass_fds),
                   warnoptions=[f[2:] for f in flags if f.startswith("-W")],
                   sigint_ignored=signal.getsignal(signal.SIGINT) == signal.SIG_IGN)
        socket.send_fds(ours, [json.dumps(req).encode()], [0, 1, 2, *pass_fds])
        ours.close()
        ours = None
        return spare

    class Popen(subprocess.Popen):
        def _execute_child(self, args, executable, preexec_fn, close_fds, pass_fds, cwd, env_,
                           startupinfo, creationflags, shell, p2cread, p2cwrite, c2pread, c2pwrite,
                           errread, errwrite, restore_signals, gid, gids, uid, umask,
                           start_new_session, process_group):
            if (not shell and executable is None and isinstance(args, (list, tuple))
                    and len(args) >= 2 and preexec_fn is None and close_fds and not pass_fds
                    and restore_signals and not start_new_session and process_group in (None, -1)
                    and (gid, gids, uid, umask) == (None, None, None, -1)
                    and (p2cread, p2cwrite, c2pread, c2pwrite, errread, errwrite) == (-1,) * 6):
                self.pid = hand_over(list(args), cwd, dict(os.environ if env_ is None else env_))
                if self.pid is not None:
                    self._child_created = True
                    return
            return super()._execute_child(
                args, executable, preexec_fn, close_fds, pass_fds, cwd, env_, startupinfo,
                creationflags, shell, p2cread, p2cwrite, c2pread, c2pwrite, errread, errwrite,
                restore_signals, gid, gids, uid, umask, start_new_session, process_group)

    spawnv_passfds = multiprocessing.util.spawnv_passfds

    def spawn(path, args, passfds):
        if os.fsdecode(path) == sys.executable and len(args) >= 2:
            started = hand_over([path, *args[1:]], None, dict(os.environ), sorted(map(int, passfds)))
            if started is not None:
                return started
        return spawnv_passfds(path, args, passfds)

    subprocess.Popen = Popen
    multiprocessing.util.spawnv_passfds = spawn


def _reseed() -> None:
    """Each process its own random state, as a new Python has."""
    import random

    import numpy as np

    random.seed()
    np.random.seed()


def terminal_ctrl_c() -> None:
    """Ctrl-C as a terminal gives it (Python's KeyboardInterrupt): a test worker may ignore SIGINT,
    and a process started from it would inherit that."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def ignore_ctrl_c() -> None:
    """Ctrl-C ignored, as a background job of a script inherits it (`python serve.py &` without
    job control)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _at_import(env: dict) -> dict:
    return {k: v for k, v in env.items() if k.upper().startswith(AT_IMPORT)}


class Warm:
    """A pre-imported Python, started on first use in each test process, and another for each
    environment of that process that differs in a variable read at import (an in-process run that
    set HF_HUB_OFFLINE, say); a command keeps the one it was started from."""

    started: dict[tuple, "Warm"] = {}

    def __init__(self):
        self.spares = tempfile.mkdtemp(prefix="bertlab-spares-")  # (their command lines)
        atexit.register(shutil.rmtree, self.spares, True)
        self.proc = subprocess.Popen([sys.executable, __file__, self.spares], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     cwd=Path(__file__).parent, bufsize=0,
                                     preexec_fn=terminal_ctrl_c)
        self.ended: dict[int, int] = {}
        assert self.proc.stdout.readline() == b"ready\n"

    @classmethod
    def get(cls) -> "Warm":
        key = tuple(sorted(_at_import(os.environ).items()))
        now = cls.started.get(key)
        if now is None or now.proc.poll() is not None:
            cls.started[key] = now = cls()
        return now

    @staticmethod
    def fits(env: dict) -> bool:
        """Whether a command with this environment can start warm: no variable read at import set
        otherwise than in this process (`PREWARMED=0 make test`: every command cold)."""
        return os.environ.get("PREWARMED") != "0" and _at_import(env) == _at_import(os.environ)

    def read_until(self, want, timeout: float):
        """Read the server's lines, keeping exit statuses, until want(line) or the timeout."""
        end = time.monotonic() + timeout
        while True:
            left = max(0.0, end - time.monotonic())
            if not select.select([self.proc.stdout], [], [], left)[0]:
                return None
            line = self.proc.stdout.readline().decode().split()
            if len(line) == 2:
                self.ended[int(line[0])] = int(line[1])
            if want(line):
                return line


class Process:
    """The part of `subprocess.Popen` the tests use, for a command forked by the warm server:
    stdout and stderr go to files (text), read back by communicate() or as .stdout/.stderr."""

    def __init__(self, script, args, cwd, env, stdin=None, merge=False, new_session=False,
                 log=None, ctrl_c_ignored=False):
        self.server = server = Warm.get()
        self.dir = Path(tempfile.mkdtemp(prefix="bertlab-command-"))
        atexit.register(shutil.rmtree, self.dir, True)
        self._in = self.dir / "stdin"
        self._in.write_text(stdin or "")
        out = Path(log or self.dir / "stdout").absolute()  # log: stdout and stderr into this file
        # (absolute: opened where the caller is, as a cold start's open(log) is)
        merge = merge or log is not None
        err = out if merge else self.dir / "stderr"
        req = dict(script=str(script), args=[str(a) for a in args], cwd=str(cwd), env=env,
                   stdin=str(self._in), stdout=str(out), stderr=str(err), new_session=new_session,
                   ctrl_c_ignored=ctrl_c_ignored)
        server.proc.stdin.write((json.dumps(req) + "\n").encode())
        line = server.read_until(lambda w: len(w) == 1, 60)
        assert line is not None, "the warm server did not start the command"
        self.pid, self.args, self.returncode = int(line[0]), [script, *args], None
        self._out, self._err, self.merge = out, err, merge

    def poll(self):
        if self.returncode is None:
            self.server.read_until(lambda w: False, 0)
            self.returncode = self.server.ended.pop(self.pid, None)
        return self.returncode

    def wait(self, timeout=None):
        if self.poll() is None:
            line = self.server.read_until(lambda w: len(w) == 2 and int(w[0]) == self.pid,
                                          1e9 if timeout is None else timeout)
            if line is None:
                raise subprocess.TimeoutExpired(self.args, timeout)
            self.returncode = self.server.ended.pop(self.pid)
        return self.returncode

    def send_signal(self, sig):
        if self.poll() is None:
            os.kill(self.pid, sig)

    def kill(self):
        import signal

        self.send_signal(signal.SIGKILL)

    @staticmethod
    def _read(path: Path) -> str:
        return path.read_text(errors="replace") if path.exists() else ""

    def output(self) -> tuple[str, str | None]:
        return self._read(self._out), None if self.merge else self._read(self._err)

    def communicate(self, timeout=None):
        self.wait(timeout)
        return self.output()

    @property
    def stdout(self):  # (what the command wrote so far, as a file to read; no descriptor left open)
        return io.StringIO(self._read(self._out))

    @property
    def stderr(self):
        return io.StringIO(self._read(self._err))


def run(script, args, cwd, env, stdin=None, timeout=300) -> subprocess.CompletedProcess:
    """`subprocess.run(capture_output=True, text=True)` for a script, from the warm server."""
    p = Process(script, args, cwd, env, stdin=stdin)
    try:
        out, err = p.communicate(timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        raise
    return subprocess.CompletedProcess(p.args, p.returncode, out, err)


def _run_and_exit(script: str, source: str | None = None) -> None:
    """Run the script as `__main__` and end the process as Python's own exit does: the exit status
    of a SystemExit (its message on stderr), or a traceback and 1, or Ctrl-C's signal; non-daemon
    threads joined, atexit functions run, stdout and stderr flushed. Then os._exit, as
    multiprocessing's forked children end: unloading the pre-imported modules would write to, so
    copy, every page the child shares with the server (0.6 s a command, measured)."""
    import runpy
    import signal
    import threading

    ctrl_c = False
    try:
        if source is None:
            runpy.run_path(script, run_name="__main__")
        else:  # (python -c source: in a new __main__ module)
            import builtins
            import types

            main = sys.modules["__main__"] = types.ModuleType("__main__")
            main.__builtins__ = builtins
            exec(compile(source, "<string>", "exec"), main.__dict__)
        code = 0
    except SystemExit as e:
        code = e.code
        if code is None:
            code = 0
        elif not isinstance(code, int):
            print(code, file=sys.stderr)
            code = 1
    except BaseException as e:
        sys.excepthook(type(e), e, e.__traceback__)
        ctrl_c, code = isinstance(e, KeyboardInterrupt), 1
    threading._shutdown()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            code = 120  # (what Python exits with when flushing stdout fails)
    if ctrl_c:  # (Python ends an uncaught KeyboardInterrupt by killing itself with SIGINT)
        terminal_ctrl_c()
        os.kill(os.getpid(), signal.SIGINT)
    os._exit(code & 0xFF)


def command_line(pid: int) -> bytes:
    """/proc/<pid>/cmdline, or for a process a spare became, the command line it was started with
    (a spare's own is this server's)."""
    for warm in Warm.started.values():
        started = Path(warm.spares) / str(pid)
        if started.is_file():
            return started.read_bytes()
    return Path(f"/proc/{pid}/cmdline").read_bytes()


if __name__ == "__main__":
    spares = sys.argv[1]
    request = _serve()  # returns only in a forked child: what follows runs the command
    _become(request)
    del request
    _spare(spares)
    _run_and_exit(sys.argv[0])
