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
import json, os, random, signal, sys
import numpy as np
sys.stdout.write(json.dumps(dict(argv=sys.argv, cwd=os.getcwd(), path0=sys.path[0], name=__name__,
    env=os.environ.get("ASKED"), stdin=sys.stdin.read(), pid=os.getpid(), pgid=os.getpgid(0),
    sigint=str(signal.getsignal(signal.SIGINT)), draws=[random.random(), float(np.random.rand())])))
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


PARENT = """
import json, os, subprocess, sys
child, cwd = sys.argv[1:3]
env = {**os.environ, "ASKED": "child", "PL_GLOBAL_SEED": "7"}  # (as Lightning's DDP launcher does)
p = subprocess.Popen([sys.executable, child, "x=1"], env=env, cwd=cwd)
print(json.dumps(dict(status=p.wait(), ppid=os.getpid())), flush=True)
if sys.argv[3] == "twice":  # (the spare is used once: a second start runs as Popen does)
    print(json.dumps(dict(status=subprocess.Popen([sys.executable, child, "x=2"]).wait(),
                          ppid=os.getpid())), flush=True)
if sys.argv[3] == "wait":
    p = subprocess.Popen([sys.executable, child, "wait"])
    import time; time.sleep(60)
"""

CHILD = """
import json, os, random, signal, sys
import numpy as np
print(json.dumps(dict(argv=sys.argv, cwd=os.getcwd(), path0=sys.path[0], name=__name__,
    env=os.environ.get("ASKED"), seed=os.environ.get("PL_GLOBAL_SEED"), ppid=os.getppid(),
    pgid=os.getpgid(0), sid=os.getsid(0), sigint=str(signal.getsignal(signal.SIGINT)),
    warm="torch" in sys.modules, draws=[random.random(), float(np.random.rand())])), flush=True)
print("child to stderr", file=sys.stderr)
if sys.argv[1] == "wait":
    import time; time.sleep(60)
sys.exit(5)
"""


def test_a_python_script_a_command_starts_is_what_a_cold_one_is(tmp_path):
    """A command's `Popen([sys.executable, script])` (Lightning's second DDP process) starts from
    the command's spare copy: the same child, streams, folder, environment and process group."""
    (tmp_path / "parent.py").write_text(PARENT)
    (tmp_path / "child.py").write_text(CHILD)
    (tmp_path / "sub").mkdir()
    args = [str(tmp_path / "child.py"), str(tmp_path / "sub"), "twice"]
    cold = subprocess.run([sys.executable, str(tmp_path / "parent.py"), *args], cwd=tmp_path,
                          capture_output=True, text=True, preexec_fn=prewarmed.terminal_ctrl_c)
    warm = prewarmed.run(tmp_path / "parent.py", args, tmp_path, dict(os.environ))
    assert cold.returncode == warm.returncode == 0, warm.stderr
    assert cold.stderr == warm.stderr == "child to stderr\n" * 2
    seen = [[json.loads(line) for line in r.stdout.splitlines()] for r in (cold, warm)]
    for first, ended, second, ended_too in seen:
        assert first["ppid"] == ended["ppid"] and second["ppid"] == ended_too["ppid"]  # its child
        assert ended["status"] == ended_too["status"] == 5
        assert (first["env"], first["seed"], second["env"]) == ("child", "7", None)
        assert first["pgid"] == second["pgid"] == os.getpgid(0)  # (the test's group, as the parent's)
        assert first["draws"] != second["draws"]
    assert [s["warm"] for s in (seen[0][0], seen[1][0], seen[0][2], seen[1][2])] == [
        False, True, False, False]  # (the first start, warm: else this test checks nothing new)
    for cold_line, warm_line in zip(seen[0], seen[1]):
        for line in (cold_line, warm_line):
            for key in ("ppid", "warm", "draws"):
                line.pop(key, None)
        assert cold_line == warm_line
    assert seen[1][0]["cwd"] == str(tmp_path / "sub") and seen[1][0]["sigint"].startswith(
        "<built-in function default_int_handler")


def test_a_python_script_a_command_starts_is_in_its_group(tmp_path):
    """...so a signal to the command's process group reaches it, and a spare never called ends
    with the command."""
    (tmp_path / "parent.py").write_text(PARENT)
    (tmp_path / "child.py").write_text(CHILD)
    p = prewarmed.Process(tmp_path / "parent.py", [tmp_path / "child.py", tmp_path, "wait"],
                          tmp_path, dict(os.environ), new_session=True)
    deadline = time.time() + 60
    while p.output()[0].count("\n") < 3 and time.time() < deadline:
        time.sleep(0.05)
    first, ended, waiting = (json.loads(line) for line in p.output()[0].splitlines())
    assert waiting["warm"] is False and waiting["pgid"] == waiting["sid"] == p.pid  # (the 2nd: cold)
    group = [pid for pid in map(int, filter(str.isdigit, os.listdir("/proc")))
             if _group_of(pid) == p.pid]
    assert len(group) == 2, group  # the command and its child: no spare left waiting
    os.killpg(p.pid, signal.SIGKILL)
    assert p.wait(timeout=30) == -signal.SIGKILL
    deadline = time.time() + 30
    while any(_group_of(pid) == p.pid for pid in group) and time.time() < deadline:
        time.sleep(0.05)
    assert not [pid for pid in group if _group_of(pid) == p.pid]
    q = prewarmed.Process(tmp_path / "child.py", ["0"], tmp_path, dict(os.environ),
                          new_session=True)
    assert q.wait(timeout=60) == 5
    time.sleep(0.5)
    assert _group_of(q.pid) is None  # (its spare, never called, ended with it)
    assert not [pid for pid in map(int, filter(str.isdigit, os.listdir("/proc")))
                if _group_of(pid) == q.pid]


SPAWNS = """
import json, multiprocessing as mp, os, sys, warnings


def report(q):
    q.put(dict(argv=sys.argv, cwd=os.getcwd(), name=mp.current_process().name,
               parent=mp.parent_process().pid, main=sys.modules["__main__"].__name__,
               env=os.environ.get("ASKED"), pgid=os.getpgid(0), warm="torch" in sys.modules,
               note_ignored=any(f[0] == "ignore" and f[1] is not None and f[1].match("a note")
                                for f in warnings.filters)))
    sys.exit(3)


if __name__ == "__main__":
    os.environ["ASKED"] = "spawned"
    sys.warnoptions.append("ignore:a note:UserWarning")  # (spawn passes it on as -W)
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=report, args=(q,), name="worker")
    p.start()
    got = q.get(timeout=60)
    p.join()
    got.update(exitcode=p.exitcode, parent=got["parent"] == os.getpid())
    print(json.dumps(got))
"""


def test_a_process_of_multiprocessing_spawn_is_what_a_cold_one_is(tmp_path):
    """A command's spawn-started process (litserve's inference worker) starts from its spare."""
    (tmp_path / "spawns.py").write_text(SPAWNS)
    (tmp_path / "sub").mkdir()
    cold = subprocess.run([sys.executable, str(tmp_path / "spawns.py")], cwd=tmp_path / "sub",
                          capture_output=True, text=True, preexec_fn=prewarmed.terminal_ctrl_c)
    warm = prewarmed.run(tmp_path / "spawns.py", [], tmp_path / "sub", dict(os.environ))
    assert cold.returncode == warm.returncode == 0, warm.stderr
    assert cold.stderr == warm.stderr == ""
    seen = [json.loads(r.stdout) for r in (cold, warm)]
    assert [s.pop("warm") for s in seen] == [False, True]
    assert seen[0] == seen[1] and seen[0]["pgid"] == os.getpgid(0)
    assert (seen[1]["exitcode"], seen[1]["parent"], seen[1]["note_ignored"]) == (3, True, True)
    assert (seen[1]["main"], seen[1]["env"], seen[1]["name"]) == ("__mp_main__", "spawned", "worker")


def _group_of(pid: int) -> int | None:
    """A live process's group (None: gone, or a zombie)."""
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] == "Z" else int(fields[2])


def test_a_command_started_with_ctrl_c_ignored_keeps_it_so(tmp_path):
    """As a background job inherits it: Python leaves an ignored SIGINT ignored."""
    script = tmp_path / "probe.py"
    script.write_text(SCRIPT)
    cold = subprocess.run([sys.executable, str(script), "0"], cwd=tmp_path, capture_output=True,
                          text=True, preexec_fn=prewarmed.ignore_ctrl_c)
    warm = prewarmed.Process(script, ["0"], tmp_path, dict(os.environ), ctrl_c_ignored=True)
    warm.wait(timeout=60)
    seen = [json.JSONDecoder().raw_decode(out)[0]["sigint"] for out in (cold.stdout, warm.output()[0])]
    assert seen == [str(signal.SIG_IGN)] * 2


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
