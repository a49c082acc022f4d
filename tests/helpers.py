"""Helpers the test modules share: composing a command's config in-process, a small trained run,
running a command as a user would, and reading predictions."""
from __future__ import annotations

import json
import random
import os
import subprocess
import sys

import pandas as pd
import prewarmed
from hydra import compose, initialize_config_dir

from conftest import CONF, ROOT, sentences


def job(sweep, num):
    """A sweep's job folder by number (named `<num>_<overrides>`)."""
    (folder,) = sweep.glob(f"{num}_*")
    return folder


def command(script, args, cwd, env=None, stdin=None):
    """`python <script> <args>` as a user runs it; from the pre-imported Python (prewarmed.py)
    unless the environment asks for another import."""
    env = {**os.environ, **(env or {})}
    if prewarmed.Warm.fits(env):
        return prewarmed.run(ROOT / script, args, cwd, env, stdin=stdin)
    return subprocess.run([sys.executable, str(ROOT / script), *args], cwd=cwd, input=stdin,
                          capture_output=True, text=True, timeout=300, env=env)


def start(script, args, cwd, env=None, merge=False, new_session=False, log=None,
          ctrl_c_ignored=False):
    """`subprocess.Popen(text=True)` of `python <script> <args>`, its stderr into stdout if `merge`,
    both into the file `log` if given; the returned process has .pid, poll(), wait(),
    send_signal(), communicate() and .stderr; Ctrl-C is a terminal's, cold or not, or ignored as a
    background job inherits it (`ctrl_c_ignored`)."""
    env = {**os.environ, **(env or {})}
    if prewarmed.Warm.fits(env):
        return prewarmed.Process(ROOT / script, args, cwd, env, merge=merge, new_session=new_session,
                                 log=log, ctrl_c_ignored=ctrl_c_ignored)
    return subprocess.Popen([sys.executable, str(ROOT / script), *args], cwd=cwd, env=env, text=True,
                            stdout=open(log, "w") if log else subprocess.PIPE,
                            start_new_session=new_session, preexec_fn=prewarmed.ignore_ctrl_c
                            if ctrl_c_ignored else prewarmed.terminal_ctrl_c,
                            stderr=subprocess.STDOUT if merge or log else subprocess.PIPE)


def cli(args, cwd, env=None):
    return command("train.py", args, cwd, env)



def compose_tool(name: str, *overrides: str):
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return compose(name, overrides=list(overrides))



def trained(tmp_path_factory, *overrides):
    """A run of the tiny model on 160 rows, one epoch, trained in this process."""
    from bertlab.training.train import train

    run_dir = tmp_path_factory.mktemp("run")
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=["model=tiny", "data.max_samples=160", "batch_size=16",
                                          "max_epochs=1", f"output_dir={run_dir}", *overrides])
    train(cfg)
    return run_dir


def tool(script, *args, stdin=None, env=None):
    return command(script, args, os.getcwd(), env, stdin=stdin)


# printed by ordinary commands before, each asking nothing of a user (the console says only what
# asks something of the user; the run's log file keeps the rest)
NOISE = ("litlogger", "GPU available", "TPU available", "smaller than the logging interval",
         "Restoring states from the checkpoint", "Generating train split", "Map:", "INFO: ",
         "TypedStorage is deprecated", "quantized tensor creation", "Writing model shards",
         "Loading weights", "FutureWarning", "Creating initial MLflow", "leaked semaphore")


def cold_caches(folder) -> dict:
    """A command's environment with empty caches (a warm one hides the bars of first reads)."""
    return {"HF_DATASETS_CACHE": str(folder / "cache_hf"), "BERTLAB_CACHE": str(folder / "cache")}


def assert_quiet(r: subprocess.CompletedProcess) -> None:
    """A command that worked and printed none of NOISE."""
    assert r.returncode == 0, r.stderr[-2000:]
    said = r.stdout + r.stderr
    assert not [n for n in NOISE if n in said], said[-3000:]


def evaluate(run_dir, *overrides, out):
    from bertlab.use.evaluate import evaluate as run_eval

    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("eval", overrides=[f"run_dir={run_dir}", f"output_dir={out}", *overrides])
    return run_eval(cfg)


def predictions(path):
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text().splitlines()]
    import csv

    return list(csv.DictReader(path.open()))


def table(kind: str, n: int, seed: int) -> pd.DataFrame:
    """Labelled rows of each kind; windows: texts of about 60 tokens, over max_length=32."""
    rows = sentences(n, seed)
    df = pd.DataFrame({"text": [t for t, _ in rows], "label": [y for _, y in rows]})
    if kind == "pair":  # (a text column of another name: predict reads the run's own)
        df["hypothesis"] = [f"it was {'good' if i % 3 else 'bad'}" for i in range(n)]
        df = df.rename(columns={"text": "premise"})
    if kind == "multilabel":
        df["label"] = [[["a"], ["b"], ["a", "c"]][i % 3] for i in range(n)]
    if kind == "windows":
        rnd = random.Random(seed)
        df["text"] = [" ".join([t] + [rnd.choice(["the", "film", "was", "long"]) for _ in range(50)])
                      for t in df["text"]]
    return df
