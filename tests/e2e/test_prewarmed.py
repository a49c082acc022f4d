"""The pre-imported Python the command tests start from (tests/prewarmed.py) runs a script as a
cold `python script args` does: this checks it against one, on what a command can observe."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import prewarmed

SCRIPT = """
import json, os, random, sys
import numpy as np
sys.stdout.write(json.dumps(dict(argv=sys.argv, cwd=os.getcwd(), path0=sys.path[0], name=__name__,
    env=os.environ.get("ASKED"), stdin=sys.stdin.read(), pid=os.getpid(), pgid=os.getpgid(0),
    draws=[random.random(), float(np.random.rand())])))
print("to stderr", file=sys.stderr)
if sys.argv[1] == "raise":
    raise ValueError("a bug")
if sys.argv[1] == "interrupt":
    raise KeyboardInterrupt
if sys.argv[1] == "wait":
    import time; time.sleep(60)
if sys.argv[1] == "message":
    sys.exit("a user error")
import atexit, threading, time
atexit.register(print, "at exit")  # (stdout to a file is buffered: flushed at the exit)
threading.Thread(target=lambda: (time.sleep(0.3), print("a thread's last words"))).start()
sys.exit(int(sys.argv[1]))
"""

# how each probe ends: its exit status, and what its stdout holds after the JSON
ENDS = {"3": (3, "a thread's last words\nat exit\n"), "0": (0, "a thread's last words\nat exit\n"),
        "raise": (1, ""), "interrupt": (-signal.SIGINT, ""), "message": (1, "")}


def test_a_forked_command_is_what_a_cold_one_is(tmp_path):
    script = tmp_path / "probe.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "ASKED": "yes"}
    for args in (["3", "x=1"], ["0"], ["raise"], ["interrupt"], ["message"]):
        cold = subprocess.run([sys.executable, str(script), *args], cwd=tmp_path, env=env,
                              input="in", capture_output=True, text=True,
                              preexec_fn=prewarmed.terminal_ctrl_c)
        warm = prewarmed.run(script, args, tmp_path, env, stdin="in")
        status, end = ENDS[args[0]]
        assert warm.returncode == cold.returncode == status, (args, warm.stderr)
        seen = [json.JSONDecoder().raw_decode(r.stdout) for r in (cold, warm)]
        assert cold.stdout[seen[0][1]:] == warm.stdout[seen[1][1]:] == end
        seen = [s for s, _ in seen]
        assert seen[0]["pgid"] == seen[1]["pgid"] == os.getpgid(0)  # the test's process group
        for s in seen:
            s.pop("pid"), s.pop("pgid")
        assert seen[1]["draws"] != seen[0]["draws"]  # each process draws its own random state
        assert {**seen[0], "draws": 0} == {**seen[1], "draws": 0}
        assert seen[1]["argv"] == [str(script), *args] and seen[1]["env"] == "yes"
        if args[0] in ("raise", "interrupt"):
            for r in (cold, warm):
                assert "Traceback" in r.stderr and r.stderr.strip().endswith(
                    "ValueError: a bug" if args[0] == "raise" else "KeyboardInterrupt")
        else:
            assert warm.stderr == cold.stderr == "to stderr\n" + "a user error\n" * (args[0] == "message")
    draws = [json.JSONDecoder().raw_decode(prewarmed.run(script, ["0"], tmp_path, env).stdout)[0]
             ["draws"] for _ in "ab"]
    assert draws[0] != draws[1]  # and not the server's state, twice


def test_a_forked_command_takes_signals_and_its_own_session(tmp_path):
    script = tmp_path / "probe.py"
    script.write_text(SCRIPT)
    p = prewarmed.Process(script, ["wait"], tmp_path, dict(os.environ), new_session=True)
    deadline = time.time() + 30
    while not p.output()[0] and time.time() < deadline:
        time.sleep(0.05)
    assert p.poll() is None
    seen = json.JSONDecoder().raw_decode(p.output()[0])[0]
    assert seen["pid"] == seen["pgid"] == p.pid  # a session (and group) of its own
    os.killpg(p.pid, signal.SIGTERM)
    assert p.wait(timeout=30) == -signal.SIGTERM


def test_an_environment_read_at_import_starts_cold(monkeypatch):
    monkeypatch.delenv("PREWARMED", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # (an in-process test may have set it)
    assert prewarmed.Warm.fits(dict(os.environ))
    assert not prewarmed.Warm.fits({**os.environ, "HF_HUB_OFFLINE": "1"})
    assert prewarmed.Warm.fits({**os.environ, "BERTLAB_CACHE": "/elsewhere"})


def test_a_config_file_parsed_once_is_read_again_when_it_changes(tmp_path):
    """parse_config_files_once (on in every test process): a changed file composes its new
    content, and what one compose changes is not in the next."""
    from hydra import compose, initialize_config_dir
    from omegaconf import open_dict

    (tmp_path / "group").mkdir()
    (tmp_path / "main.yaml").write_text("defaults:\n  - group: a\n  - _self_\nx: 1\n")
    (tmp_path / "group" / "a.yaml").write_text("y: 2\n")

    def composed():
        with initialize_config_dir(str(tmp_path), version_base="1.3"):
            return compose("main")

    first = composed()
    assert (first.x, first.group.y) == (1, 2)
    with open_dict(first):
        first.group.y = 3
    assert composed().group.y == 2  # a copy each time
    (tmp_path / "group" / "a.yaml").write_text("y: 20\n")  # (another size)
    (tmp_path / "main.yaml").write_text("defaults:\n  - group: a\n  - _self_\nx: 5\n")
    os.utime(tmp_path / "main.yaml", ns=(1, 1))  # (the same size: told apart by its time)
    again = composed()
    assert (again.x, again.group.y) == (5, 20)
