"""An exported ONNX model (export.py format=onnx) run by ONNX Runtime, in TrainedNetwork's place."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from bertlab.errors import ConfigError, require
from bertlab.models.network import HParams
from bertlab.task import task_of


def onnx_folder(run_dir: str | Path) -> Path:
    """The folder holding model.onnx: `run_dir` itself (an export) or the run's onnx/ export."""
    run_dir = Path(run_dir)
    for folder in (run_dir, run_dir / "onnx"):
        if (folder / "model.onnx").is_file() and (folder / "bertlab.json").is_file():
            return folder
    raise ConfigError(f"run_dir={run_dir} holds no ONNX model; write one with "
                      f"python export.py run_dir={run_dir} format=onnx")


class OnnxNetwork:
    """Called like TrainedNetwork (token tensors in, logits out) with the same hparams and task,
    so that prediction code runs either."""

    def __init__(self, folder: Path) -> None:
        require("onnxruntime", "onnx", "backend=onnx")
        import onnxruntime as ort

        meta = json.loads((folder / "bertlab.json").read_text())
        self.hparams = HParams({**meta, "model": {"tokenizer": str(folder)}})
        self.task = task_of(meta["task"])
        self.thresholds = meta.get("thresholds")  # multi-label decisions (thresholds.py)
        self.session = ort.InferenceSession(str(folder / "model.onnx"),
                                            providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]

    def __call__(self, **batch: torch.Tensor) -> torch.Tensor:
        if "token_type_ids" not in batch:  # single texts: one segment (ids as training encodes them)
            batch = {**batch, "token_type_ids": torch.zeros_like(batch["input_ids"])}
        feed = {k: batch[k].numpy() for k in self.inputs}
        return torch.from_numpy(self.session.run(["logits"], feed)[0])
