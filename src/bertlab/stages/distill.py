"""Knowledge distillation (distill.teacher=<run>): this run, the student, learns from a trained
run's predictions (Hinton et al., 2015, "Distilling the Knowledge in a Neural Network"): the
loss is alpha * T^2 * KL(teacher || student) on probabilities softened by a temperature T, plus
(1 - alpha) * the run's own loss on the labels (rows of data.unlabeled_file have none: the
teacher alone teaches them). By default the student is the teacher's own encoder with fewer
layers, taken every other one and initialised from the teacher (as DistilBERT was). The
teacher's predictions are computed once, batched, and cached beside the tokenized data.
Hand-written: neither Lightning nor transformers has a distillation loss or trainer for this."""
from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import torch
from omegaconf import DictConfig

from bertlab.errors import ConfigError
from bertlab.files import written_whole

log = logging.getLogger(__name__)


def teacher_checkpoint(cfg: DictConfig) -> Path | None:
    """The teacher run's best checkpoint (None: no distillation), refusing runs that are not
    finished bertlab runs."""
    from bertlab.models.checkpoints import find_checkpoint
    from bertlab.cli.runs import recorded

    d = cfg.get("distill") or {}
    teacher = d.get("teacher")
    if not teacher:
        if cfg.data.get("unlabeled_file"):
            raise ConfigError("data.unlabeled_file is learnt from a teacher's predictions; set "
                              "distill.teacher=<a trained run> too, or drop data.unlabeled_file")
        return None
    if not Path(teacher).is_dir():
        raise ConfigError(f"distill.teacher={teacher} is not a folder; give a trained run "
                          f"(outputs/runs/<run>)")
    status = recorded(teacher).get("status")
    if status != "finished":
        raise ConfigError(f"distill.teacher={teacher} is not a finished run (its status: "
                          f"{status or 'no metrics.json'}); train it to the end first")
    return find_checkpoint(teacher)


def kept_layers(total: int, layers: int) -> list[int]:
    """`layers` of `total` teacher layers, evenly spaced and ending at the top (6 -> 3: 1, 3, 5)."""
    if not isinstance(layers, int) or isinstance(layers, bool) or not 0 < layers < total:
        raise ConfigError(f"distill.layers={layers!r} is not valid; the teacher has {total} layers, "
                          f"so use 1..{total - 1} (or null: the student is the model= option)")
    return [round((i + 1) * total / layers) - 1 for i in range(layers)]


def student_model(cfg: DictConfig, teacher_hp: dict) -> tuple[dict | None, list[int] | None]:
    """With distill.layers: (the student's model config: the teacher's encoder with that many
    layers, whose weights init_from_teacher copies in; the teacher layers kept); else (None, None)."""
    layers = cfg.distill.get("layers")
    if layers is None:
        return None, None
    model = dict(teacher_hp["model"])
    overrides = dict(model.get("config_overrides") or {})
    from transformers import AutoConfig

    from bertlab.hub import from_pretrained

    total = overrides.get("num_hidden_layers") or from_pretrained(
        AutoConfig, model["name_or_path"], what="the teacher's model").num_hidden_layers
    keep = kept_layers(total, layers)
    model.update(pretrained=False, peft=None, config_overrides={**overrides, "num_hidden_layers": layers})
    return model, keep


def check_data(teacher_hp: dict, dm) -> None:
    """The teacher must have learnt the task and labels of this data."""
    task, labels = teacher_hp["task"], list(teacher_hp["labels"])
    if task != dm.task.name or labels != list(dm.labels):
        theirs = f"{task} with labels {labels}" if labels else task
        ours = f"{dm.task} with labels {dm.labels}" if dm.labels else str(dm.task)
        raise ConfigError(f"distill.teacher was trained for {theirs}; this data is {ours}; give a "
                          f"teacher trained on this task")


def record(cfg: DictConfig, dm, keep: list[int] | None) -> dict:
    """metrics.json's `distill`: the teacher, its metrics and how the student learnt from it."""
    from bertlab.cli.runs import recorded

    d = cfg.distill
    return {"teacher": str(d.teacher), "teacher_metrics": {k: v for k, v in recorded(d.teacher).items()
                                                           if "/" in k},
            "student": f"the teacher's layers {keep} (of its encoder)" if keep else "model=",
            "temperature": d.temperature, "alpha": d.alpha,
            "unlabeled_rows": dm.report.get("unlabeled", {}).get("train", 0)}


def init_from_teacher(student, teacher, keep: list[int]) -> None:
    """The student's weights: the teacher's, with student layer i = teacher layer keep[i]."""
    import re

    state = teacher.state_dict()
    moved = {}
    for key, value in state.items():
        m = re.search(r"\.layer\.(\d+)\.", key)
        if m is None:
            moved[key] = value
        elif int(m.group(1)) in keep:
            moved[key.replace(m.group(0), f".layer.{keep.index(int(m.group(1)))}.", 1)] = value
    missing, unexpected = student.load_state_dict(moved, strict=False)
    wrong = [k for k in missing if k.startswith("net.")] + [k for k in unexpected if k.startswith("net.")]
    if wrong:
        raise RuntimeError(f"the student does not take the teacher's weights: {wrong[:5]}")


def targets(ckpt: Path, dm, cache_root: Path) -> torch.Tensor:
    """The teacher's logits for every training row (a window: its document's), computed once with
    the teacher's own tokenizer, cleaning and windows, and cached."""
    from transformers import AutoTokenizer

    from bertlab.models.checkpoints import load_network
    from bertlab.hub import from_pretrained
    from bertlab.models.inference import inference_precision, predict_texts

    stat = ckpt.resolve().stat()
    key = hashlib.sha256(f"{dm.cache_folder.name}|{ckpt.resolve()}|{stat.st_size}|{stat.st_mtime}"
                         .encode()).hexdigest()[:16]
    path = cache_root / f"teacher-{key}.pt"
    if path.is_file():
        log.info("teacher predictions from cache %s", path)
        per_doc = torch.load(path, weights_only=True)
    else:
        with torch.random.fork_rng(devices=[]):  # building the teacher draws random numbers: the
            teacher = load_network(ckpt)         # run must not depend on whether they were cached
        teacher.temperature = 1.0  # its raw logits (a calibrated teacher's T is for predict)
        tok = from_pretrained(AutoTokenizer, teacher.hparams.model["tokenizer"],
                              what="the teacher's tokenizer")
        precision, _ = inference_precision("auto", "torch")
        logits = predict_texts(teacher, tok, dm.texts("train"), batch_size=128, precision=precision,
                               pairs=dm.texts("train", "text_pair"), logits=True)
        per_doc = logits.float().reshape(len(logits), -1)
        cache_root.mkdir(parents=True, exist_ok=True)
        with written_whole(path) as tmp:
            torch.save(per_doc, tmp)
    ds = dm.dataset["train"]
    return per_doc[torch.tensor(ds["doc"][:])] if "doc" in ds.column_names else per_doc
