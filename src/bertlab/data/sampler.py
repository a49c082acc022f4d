"""The training order: a function of (seed, epoch) alone, so that a resumed run sees the same one."""
from __future__ import annotations

import torch
from torch.utils.data import Sampler
from transformers.trainer_pt_utils import get_length_grouped_indices


class EpochSampler(Sampler[int]):
    """Shuffled rows (length-grouped batches when `lengths` is given), reshuffled each epoch.

    Unlike a sampler that draws from one generator for the whole run, epoch e's order depends only
    on (seed, e): a run resumed at epoch e gets it without replaying earlier epochs. `skip` drops
    the first rows of the next iteration (the batches a resumed run already trained on).
    Lightning calls `set_epoch` before each epoch.
    """

    def __init__(self, n: int, seed: int, batch_size: int, lengths: list[int] | None = None):
        self.n, self.seed, self.batch_size, self.lengths = n, seed, batch_size, lengths
        self.epoch = 0
        self.skip = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def order(self, epoch: int) -> list[int]:
        g = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        if self.lengths is not None:  # transformers' grouping: what the Trainer's group_by_length does
            return list(get_length_grouped_indices(self.lengths, self.batch_size, generator=g))
        return torch.randperm(self.n, generator=g).tolist()

    def __iter__(self):
        start, self.skip = self.skip, 0
        return iter(self.order(self.epoch)[start:])

    def __len__(self) -> int:
        return self.n
