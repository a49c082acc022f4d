"""The checks of the commands that use a trained run (eval, predict, serve, export, shrink), before
they load anything: their own keys, as checks.py checks train.py's."""
from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from bertlab.cli.checks import POSITIVE_INTEGER, SWITCH, check_ranges, check_read_kwargs, integer, number
from bertlab.errors import ConfigError


# predict.py's and serve.py's own keys, checked as RANGES are
PREDICT_RANGES = {"batch_size": POSITIVE_INTEGER, "resume": SWITCH, "explain": SWITCH}


SERVE_RANGES = {
    **{key: POSITIVE_INTEGER for key in ("max_batch_size", "max_texts", "max_body_bytes",
                                         "workers")},
    "port": (lambda v: integer(v) and 1024 <= v <= 65535,
             "a port in 1024..65535 (LitServe serves on no lower one)"),
    "threads": (lambda v: v is None or integer(v) and v > 0, "a positive integer"),
    "batch_timeout": (lambda v: number(v) and v >= 0, "seconds >= 0"),
    "timeout": (lambda v: number(v) and v > 0, "seconds > 0"),
    "log_batches": SWITCH,
    "accelerator": (lambda v: v in ("auto", "cpu", "cuda", "gpu"), "auto, cpu, cuda or gpu"),
}


def check_eval(cfg: DictConfig) -> None:
    """eval.py: a file that exists; a split the run has (its metrics.json lists them)."""
    check_read_kwargs(cfg.get("read_kwargs"), "read_kwargs")
    apart = [k for k in ("text_column", "text_pair_column", "label_column", "read_kwargs")
             if cfg.get(k) is not None]
    if apart and not cfg.file:
        raise ConfigError(f"{apart[0]} is for file=<a labelled file>; the run's own split is read "
                          f"as the run read it (leave {apart[0]} out, or give file=)")
    if cfg.file:
        if not Path(cfg.file).is_file():
            raise ConfigError(f"file={cfg.file} " + ("is a folder; give a labelled file"
                              if Path(cfg.file).is_dir() else "does not exist"))
        return
    from bertlab.cli.runs import recorded

    data = recorded(cfg.run_dir).get("data", {})
    if data.get("rows"):  # (a run that has not finished: the data module checks the split)
        check_split(cfg.split, list(data["rows"]), data.get("validation", {}).get("not_carved_rows", 0))


def check_split(split: str, splits: list[str], val_trained: int = 0) -> None:
    """`val_trained`: the rows a validation split too small to carve held (they trained)."""
    if split not in splits:
        why = (f" (its {val_trained} validation rows were too few to carve: they trained, "
               f"budget.trust_val_rows)" if split == "validation" and val_trained else "")
        raise ConfigError(f"split={split} is not in this run's data{why}; it has: {', '.join(splits)}")


def check_shrink(cfg: DictConfig) -> None:
    check_ranges(cfg, {"int8": SWITCH})
    if not integer(cfg.drop_layers) or cfg.drop_layers < 0:
        raise ConfigError(f"drop_layers={cfg.drop_layers} is not valid; use a number of top "
                          f"layers >= 0, fewer than the encoder has")
    if not cfg.int8 and not cfg.drop_layers:
        raise ConfigError("nothing to do: set int8=true and/or drop_layers=N")


EXPORT_FORMATS = ("hf", "onnx")


def export_folder(cfg: DictConfig) -> Path:
    """export.py's new folder, checked: the format's options, and nothing there yet."""
    check_ranges(cfg, {"int8": SWITCH, "adapter_only": SWITCH})
    if cfg.format not in EXPORT_FORMATS:
        raise ConfigError(f"format={cfg.format} is not valid; use {' or '.join(EXPORT_FORMATS)}")
    if cfg.int8 and cfg.format != "onnx":
        raise ConfigError("int8=true is for format=onnx (for a smaller torch model: shrink.py int8=true)")
    if cfg.out is None and cfg.format == "hf":
        raise ConfigError("give out=<new folder> for the Hugging Face model")
    out = Path(cfg.out or Path(cfg.run_dir) / ("onnx_int8" if cfg.int8 else "onnx"))
    if out.exists():
        raise ConfigError(f"out={out} exists already; choose a new folder")
    if cfg.adapter_only and cfg.format != "hf":
        raise ConfigError("adapter_only=true writes a peft adapter folder; use it with format=hf")
    return out


def check_export(cfg: DictConfig) -> None:
    export_folder(cfg)  # (entry's checks return None; export() uses the folder)


def check_serve(cfg: DictConfig | None) -> None:
    """serve.py's package, before bertlab.use.serve (which needs it) is imported; its own keys and
    its address, before torch (serve() checks them again when called on its own)."""
    from bertlab.errors import require

    require("litserve", "serve", "serve.py")
    if cfg is None:
        return
    from bertlab.use.lifecycle import check_address

    check_ranges(cfg, SERVE_RANGES)
    check_address(cfg.host, cfg.port)


def check_predict(cfg: DictConfig) -> None:
    """predict.py's own keys and its input's kind, before torch (predict() checks them again
    when called on its own)."""
    from bertlab.data.inputs import input_format

    check_ranges(cfg, PREDICT_RANGES)
    check_read_kwargs(cfg.read_kwargs, "read_kwargs")
    input_format(str(cfg.input))
