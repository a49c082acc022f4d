"""A run's checkpoints: found, read safely, and rebuilt into a model (with or without Lightning)."""
from __future__ import annotations

import sys
from collections import OrderedDict
from pathlib import Path


from bertlab.cli.runs import read_checkpoint, recorded
from bertlab.errors import ConfigError, DataError
from bertlab.files import read_beside_checkpoint

# The decision rule fitted after training, each record beside its checkpoint in the run folder:
# written by the stages (stages/calibration.py, stages/thresholds.py), read by every loaded model.
CALIBRATION = "calibration.json"  # {"temperature": T, ...}
THRESHOLDS = "thresholds.json"    # {"thresholds": {label: t, ...}, ...}


def find_checkpoint(run_dir: str | None, ckpt_path: str | None = None) -> Path:
    """`ckpt_path` if given, else the run's checkpoints/best.ckpt (last.ckpt if the run finished
    without validating, so without a best one)."""
    if ckpt_path:
        path = Path(ckpt_path)
        if not path.is_file():
            raise ConfigError(f"ckpt_path={ckpt_path} " + ("is a folder; give a .ckpt file"
                                                           if path.is_dir() else "does not exist"))
        return path
    if not run_dir:
        raise ConfigError("give run_dir=outputs/runs/<run> (or ckpt_path=<file.ckpt>)")
    if not Path(run_dir).is_dir():
        raise ConfigError(f"run_dir={run_dir} is not a folder")
    path = Path(run_dir) / "checkpoints" / "best.ckpt"
    last = path.with_name("last.ckpt")
    if not path.is_file() and last.is_file() and recorded(run_dir).get("status") == "finished":
        # finished without a validation to pick a best one (max_steps < one epoch)
        print(f"note: {run_dir} has no checkpoints/best.ckpt (it finished before a validation "
              f"picked one); using checkpoints/last.ckpt", file=sys.stderr)
        return last
    if not path.is_file() and (Path(run_dir) / "bertlab.json").is_file():
        raise ConfigError(f"run_dir={run_dir} is an ONNX export (export.py format=onnx); add "
                          f"backend=onnx to run it with ONNX Runtime")
    if not path.is_file():
        folds = recorded(run_dir).get("cv", {}).get("runs")
        if folds:  # a cv run's models are its folds' (each a run folder)
            raise ConfigError(f"run_dir={run_dir} is a cross-validation run; its models are in "
                              f"its folds: run_dir={Path(run_dir) / folds[0]} (to {folds[-1]})")
        found = sorted(p.name for p in Path(run_dir).glob("checkpoints/*.ckpt"))
        raise DataError(f"run_dir={run_dir} has no checkpoints/best.ckpt (found: "
                        f"{', '.join(found) or 'no checkpoint'}); did its training finish?")
    status = recorded(run_dir).get("status")
    if status != "finished":  # killed, crashed, diverged or still training: say so
        print(f"note: {run_dir} did not finish training (status: {status or 'none, it was stopped'});"
              f" using the best checkpoint it saved before that", file=sys.stderr)
    return path


def checkpoint_hparams(path: Path) -> tuple[dict, dict]:
    """(checkpoint, its hyper-parameters), refusing files that are not bertlab checkpoints."""
    ckpt = read_checkpoint(path)
    hp = ckpt.get("hyper_parameters")
    if not hp or "task" not in hp or "state_dict" not in ckpt:
        raise DataError(f"{path} is not a bertlab checkpoint (no task or weights in it)")
    return ckpt, dict(hp)


def rebuild(path: Path, build) -> tuple:
    """(model, state_dict): `build(hparams)` made from the checkpoint's settings, in the smaller
    shape shrink.py gave it if it did; the weights are for the caller to load."""
    ckpt, hp = checkpoint_hparams(path)
    shrink = hp.pop("shrink", None)  # set by shrink.py: rebuild the same smaller shape
    model = build(hp)
    if shrink:
        from bertlab.models.compress import compress

        compress(model, shrink["drop_layers"], shrink["int8"])
        model.hparams["shrink"] = shrink
    return model, ckpt["state_dict"]


def load_model(path: Path):
    """A TextClassifier rebuilt from the checkpoint alone, in eval mode on the CPU."""
    from bertlab.models.classifier import TextClassifier

    # the weights come from the checkpoint: build the network without loading pretrained ones
    model, state = rebuild(path, lambda hp: TextClassifier(
        **{**hp, "model": {**hp["model"], "pretrained": False}}))
    model.load_state_dict(state)
    model.temperature, model.thresholds = decision_rule(path)  # for errors.csv and eval
    return model.eval()


def load_network(path: Path):
    """The checkpoint's network and settings without Lightning (TrainedNetwork), for predict.py."""
    from bertlab.models.network import TrainedNetwork, plain

    model, state = rebuild(path, TrainedNetwork)
    metadata = getattr(state, "_metadata", None)  # module versions: int8 layers read theirs
    state = OrderedDict((k, v) for k, v in state.items() if k.startswith("net."))  # not the loss's
    if metadata is not None:
        state._metadata = metadata
    model.load_state_dict(state)
    model.net = plain(model.net)  # LoRA: adapters merged into the weights, as fast as a full model
    model.temperature, model.thresholds = decision_rule(path)
    return model.eval()


def decision_rule(path: Path) -> tuple[float, list[float] | None]:
    """(temperature, thresholds in label order) fitted for this checkpoint; (1.0, None): none."""
    calibrated = read_beside_checkpoint(path, CALIBRATION)
    chosen = read_beside_checkpoint(path, THRESHOLDS)
    return (calibrated["temperature"] if calibrated else 1.0,
            list(chosen["thresholds"].values()) if chosen else None)
