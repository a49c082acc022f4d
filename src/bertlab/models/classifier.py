"""TextClassifier: a Hugging Face sequence-classification model + configurable loss + torchmetrics."""
from __future__ import annotations

import inspect
import logging
import random
import time

import lightning as L
import torch
from hydra.utils import get_class, instantiate

from bertlab.data.windows import first_of_each, pool
from bertlab.errors import ConfigError, Diverged
from bertlab.models.losses import build_loss, consistency_loss, distillation_loss
from bertlab.models.network import (build_network, freeze, layer_depths, logits, pools_mean,
                                    target_scale, unwrapped)
from bertlab.task import task_of

log = logging.getLogger(__name__)


def implementation(opt: dict, precision: str, clip: float | None) -> dict:
    """fused (one kernel for all parameters) where torch has it and Lightning allows it, else
    foreach: on the CPU torch would otherwise loop over the parameters one by one."""
    params = inspect.signature(get_class(opt["_target_"])).parameters
    fused = opt.pop("fused", None)
    if fused is None:  # Lightning refuses clipping with a fused optimizer under 16-mixed's scaler;
        # 16-true has no scaler, and needs fused: foreach AdamW's eps (1e-8) is 0 in fp16, so NaN
        fused = "fused" in params and not (precision == "16-mixed" and clip)
    if fused:
        return {"fused": True}
    return {"foreach": True} if "foreach" in params else {}


def rng_states() -> dict:
    """The global random states (torch, CUDA, Python), as tensors and lists: loadable with
    torch.load(weights_only=True), unlike numpy's state tuples."""
    version, state, gauss = random.getstate()
    return {"torch": torch.get_rng_state(), "python": [version, list(state), gauss],
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def set_rng_states(states: dict) -> None:
    torch.set_rng_state(states["torch"])
    version, state, gauss = states["python"]
    random.setstate((version, tuple(state), gauss))
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


class TextClassifier(L.LightningModule):
    """A BERT-family classifier (single- or multi-label) or regressor.

    Every argument is a plain value saved in the checkpoint, so a checkpoint alone rebuilds the
    model, its tokenizer settings and its label names.
    """

    def __init__(self, model: dict, task: str, labels: list[str], loss: dict, optimizer: dict,
                 scheduler: dict, max_length: int = 128, clean: list[str] = (),
                 class_counts: list[int] | None = None, l1: float = 0.0,
                 layer_decay: float | None = None, class_weights=None,
                 windows: dict | None = None, distill: dict | None = None,
                 target_scale: list[float] | None = None, rdrop: float = 0.0) -> None:
        super().__init__()
        task = task_of(task).name  # saved by name: checkpoints hold plain values
        self.save_hyperparameters()
        self.task = task_of(task)
        self.num_labels = self.task.num_outputs(labels)
        self.net = build_network(model, task, labels, target_scale)
        self.frozen = freeze(self.net, model)
        if model.get("compile"):  # torch.compile in place (what logits() calls): the same state dict keys
            (unwrapped(self.net).base_model if pools_mean(self.net) else self.net).compile()
        self.loss_fn = build_loss(loss, task, class_counts, class_weights)
        self.train_metrics = self.task.build_metrics(self.num_labels, "train")
        self.val_metrics = self.task.build_metrics(self.num_labels, "val")
        self.test_metrics = self.task.build_metrics(self.num_labels, "test")
        self._rng_to_restore: dict | None = None
        self.temperature = 1.0  # calibrate=true: fitted after training (calibration.py)
        self.thresholds: list[float] | None = None  # multi-label decisions (thresholds.py)
        self.window_outputs: dict[str, list] = {}  # long_text=windows: a stage's window logits
        self.fit_validation_seconds = 0.0

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        return logits(self.net, self.task, input_ids, attention_mask, token_type_ids)

    def step(self, batch: dict, stage: str) -> torch.Tensor | None:
        labels = batch.pop("labels")
        doc, window = batch.pop("doc", None), batch.pop("window", None)
        teacher, labeled = batch.pop("teacher", None), batch.pop("labeled", None)
        logits = self(**batch)
        if teacher is not None and stage == "train":
            return self.distill_step(logits, teacher, labels, labeled)
        if doc is not None and stage != "train":  # windows: scored per document at the epoch's end
            self.window_outputs.setdefault(stage, []).append(
                (doc, window, logits.detach().float(), labels))
            return None
        loss = self.score(stage, logits, labels)
        if stage == "train" and self.hparams.rdrop:
            loss = self.rdrop_loss(loss, logits, labels, batch)
        return loss

    def rdrop_loss(self, loss, logits, labels, batch) -> torch.Tensor:
        """regularization.rdrop (R-Drop, Liang et al. 2021): the batch through the network a second
        time, so under another dropout mask; the mean of the two passes' losses plus rdrop times
        how far apart their outputs are (losses.consistency_loss), logged as train/rdrop."""
        again = self(**batch)
        loss2 = self.task_loss(again, labels)
        gap = consistency_loss(self.task, *self.standardized(logits, again))
        self.log("train/rdrop", gap, on_step=True, on_epoch=False, batch_size=labels.shape[0])
        return 0.5 * (loss + loss2) + self.hparams.rdrop * gap

    def score(self, stage: str, logits: torch.Tensor, labels: torch.Tensor, epoch_end: bool = False
              ) -> torch.Tensor:
        """The loss, logged, and the metrics of `stage` updated."""
        loss = self.task_loss(logits, labels)
        preds, target = self.task.metric_inputs(self.task.scores(logits.detach()), labels)
        n = labels.shape[0]
        self.log(f"{stage}/loss", loss, on_step=stage == "train" and not epoch_end, on_epoch=True,
                 prog_bar=stage != "test", batch_size=n, sync_dist=stage != "train" and not epoch_end)
        metrics = getattr(self, f"{stage}_metrics")
        metrics.update(preds, target)
        self.log_dict(metrics, on_step=False, on_epoch=True, batch_size=n)
        return loss

    def task_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The run's loss (`loss=`) of these outputs, where it is taken (standardized)."""
        return self.loss_fn(*self.task.loss_inputs(*self.standardized(logits, labels)))

    def standardized(self, *values: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Regression: outputs and targets as (value - mean) / std of the training targets, where
        the loss is taken (the same optimum; a loss and gradients of the same size whatever the
        label's units). Classes: unchanged."""
        scale = target_scale(self.net)
        if not scale:
            return values
        return tuple((v.float() - scale[0]) / scale[1] for v in values)

    def distill_step(self, logits, teacher, labels, labeled) -> torch.Tensor:
        """distill.teacher: the mixed loss (losses.distillation_loss), logged with its two parts;
        the metrics count the labelled rows."""
        d = self.hparams.distill
        total, soft, hard = distillation_loss(self.task, *self.standardized(logits, teacher, labels),
                                         labeled, d["temperature"], d["alpha"], self.loss_fn)
        n = labels.shape[0]
        self.log("train/loss", total, on_step=True, on_epoch=True, prog_bar=True, batch_size=n)
        self.log_dict({"train/soft_loss": soft, "train/hard_loss": hard}, on_step=True,
                      on_epoch=False, batch_size=n)
        mask = labeled.bool() if labeled is not None else slice(None)
        if labels[mask].shape[0]:
            self.train_metrics.update(*self.task.metric_inputs(
                self.task.scores(logits[mask].detach()), labels[mask]))
            self.log_dict(self.train_metrics, on_step=False, on_epoch=True, batch_size=n)
        return total

    def score_documents(self, stage: str) -> None:
        """long_text=windows: pool each document's window logits (every process's, under DDP)
        and score the documents, each once."""
        parts = self.window_outputs.pop(stage, [])
        if not parts:
            return
        doc, window, logits, labels = (torch.cat(x) for x in zip(*parts))
        if self.trainer.world_size > 1:  # a document's windows may sit in several processes
            gathered = [None] * self.trainer.world_size
            torch.distributed.all_gather_object(gathered, [t.cpu() for t in (doc, window, logits, labels)])
            seen, keep = set(), []
            doc, window, logits, labels = (torch.cat(x) for x in zip(*gathered))
            for i, key in enumerate(zip(doc.tolist(), window.tolist())):
                if key not in seen:  # the sampler repeats rows to even out the processes
                    seen.add(key)
                    keep.append(i)
            doc, logits, labels = doc[keep], logits[keep], labels[keep]
        doc = doc.cpu()
        pooled = pool(logits.cpu(), doc, self.hparams.windows["pool"])[0].to(self.device)
        self.score(stage, pooled, first_of_each(labels.cpu(), doc).to(self.device), epoch_end=True)

    def on_validation_epoch_end(self) -> None:
        self.score_documents("val")

    def on_test_epoch_end(self) -> None:
        self.score_documents("test")

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = self.step(batch, "train")  # (windows train as rows, each with its document's label)
        if self.hparams.l1:  # L1 on the weight matrices (biases and LayerNorm are left alone)
            l1 = sum(p.abs().sum() for p in self.parameters() if p.requires_grad and p.ndim >= 2)
            self.log("train/l1", l1, on_step=True, on_epoch=False)
            loss = loss + self.hparams.l1 * l1
        if not torch.isfinite(loss):  # stop before this step's update spoils the weights
            raise Diverged(f"the training loss became {loss.item()} at step {self.global_step} "
                           f"(epoch {self.current_epoch})")
        return loss

    def on_train_start(self) -> None:
        t = self.trainer
        log.info("training starts: %d optimizer steps (%d batches an epoch) on %s, precision %s",
                 t.estimated_stepping_batches, t.num_training_batches, t.strategy.root_device,
                 t.precision)

    def on_validation_start(self) -> None:
        self._validation_started = time.perf_counter()

    def on_validation_end(self) -> None:  # time spent validating inside fit (sanity check too)
        if self.trainer.state.fn == "fit":
            self.fit_validation_seconds += time.perf_counter() - self._validation_started

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        if self._rng_to_restore is not None:  # resumed: dropout continues where it stopped
            set_rng_states(self._rng_to_restore)
            self._rng_to_restore = None

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        states = checkpoint.get("rng_states")
        if states and "per_rank" in states:  # DDP: this process's own (rank 0's if there are fewer)
            per_rank = states["per_rank"]
            states = per_rank[self.global_rank if self.global_rank < len(per_rank) else 0]
        self._rng_to_restore = states

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self.step(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self.step(batch, "test")

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        if "optimizer_states" in checkpoint:  # a full checkpoint, for resuming
            states = rng_states()
            if self.trainer.world_size > 1:  # every process saves together; keep each one's
                per_rank = [None] * self.trainer.world_size
                torch.distributed.all_gather_object(per_rank, states)
                states = {"per_rank": per_rank}
            checkpoint["rng_states"] = states
        # Pruning keeps weight_orig * weight_mask; store plain weights. (ModelPruning does this
        # in its own hook, which Lightning skips for weights-only checkpoints such as best.ckpt.)
        state = checkpoint["state_dict"]
        for key in [k for k in state if k.endswith("_orig") and k[:-5] + "_mask" in state]:
            state[key[:-5]] = state.pop(key) * state.pop(key[:-5] + "_mask")

    def param_groups(self, lr: float, layer_decay: float | None) -> list[dict]:
        """No weight decay on 1-D parameters (biases, LayerNorm), as in BERT; with layer_decay,
        layer i of L gets lr * layer_decay ** (L + 1 - depth), the embeddings the least. Each
        group is named for what it holds, which names its learning-rate curve (train/lr/<name>)."""
        depths = layer_depths(self.net) if layer_decay else {}
        top = max(depths.values(), default=0)
        part = lambda d: "embeddings" if d == 0 else "head" if d == top else f"layer_{d - 1}"  # noqa: E731
        groups: dict[tuple, dict] = {}
        for name, p in self.net.named_parameters():
            if not p.requires_grad:
                continue
            scale = layer_decay ** (top - depths[name]) if layer_decay else 1.0
            key = (scale, p.ndim < 2)
            decay = "no_decay" if p.ndim < 2 else "decayed"
            label = f"{part(depths[name])}_{decay}" if layer_decay else decay
            group = groups.setdefault(key, {"params": [], "lr": lr * scale, "name": label})
            if p.ndim < 2:
                group["weight_decay"] = 0.0
            group["params"].append(p)
        return list(groups.values())

    def schedule_length(self, total: int) -> dict:
        """The schedule's warmup and length for `total` optimizer steps (only transformers'
        schedules, those with a `warmup` key, take them)."""
        warmup = self.hparams.scheduler.get("warmup")
        if warmup is None:
            return {}
        return {"num_warmup_steps": round(warmup * total) if warmup < 1 else int(warmup),
                "num_training_steps": total}

    def schedule_lambdas(self, total: int) -> list | None:
        """The lr factors of the configured schedule stretched over `total` steps (budget.time
        re-plans the length mid-run); None for a schedule whose length is not set in steps."""
        kwargs = self.schedule_length(total)
        if not kwargs:
            return None
        groups = [{"params": [torch.zeros(1, requires_grad=True)]}
                  for _ in self.trainer.optimizers[0].param_groups]  # (a stand-in: nothing moves)
        stand_in = instantiate(self.hparams.scheduler["schedule"])(
            optimizer=torch.optim.SGD(groups, lr=1.0), **kwargs)
        return getattr(stand_in, "lr_lambdas", None)

    def configure_optimizers(self):
        opt = dict(self.hparams.optimizer)
        layer_decay = self.hparams.layer_decay
        if layer_decay is not None and not 0 < layer_decay <= 1:
            raise ConfigError(f"layer_decay={layer_decay} is not valid; use a factor in (0, 1], "
                              f"e.g. 0.9")
        opt.update(implementation(opt, str(self.trainer.precision), self.trainer.gradient_clip_val))
        optimizer = instantiate(opt)(self.param_groups(opt["lr"], layer_decay))
        sched = self.hparams.scheduler  # our keys beside `schedule`, the block to instantiate
        kwargs = self.schedule_length(int(self.trainer.estimated_stepping_batches))
        scheduler = instantiate(sched["schedule"])(optimizer=optimizer, **kwargs)
        lr_scheduler = {"scheduler": scheduler, "interval": sched.get("interval", "step"),
                        "name": "train/lr"}  # LearningRateMonitor's tags: train/lr/<group name>
        if sched.get("monitor"):
            lr_scheduler["monitor"] = sched["monitor"]
        return {"optimizer": optimizer, "lr_scheduler": lr_scheduler}
