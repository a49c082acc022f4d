"""The training order: a function of (seed, epoch) alone, so that a resumed run sees the same one."""
from __future__ import annotations

import torch
from torch.utils.data import DistributedSampler


def length_grouped(lengths: list[int], batch_size: int, g: torch.Generator) -> list[int]:
    """Rows in batches of similar length, the batches in random order, the longest batch first.

    Shuffled rows, sorted by length (a stable sort keeps equal lengths in random order), cut into
    batches of `batch_size` (the DataLoader cuts at the same places), the batches shuffled: almost
    no padding, and no long-to-short curriculum.
    Hand-written: transformers' `get_length_grouped_indices` (the Trainer's group_by_length)
    sorts within groups of 50 batches and keeps them in that order, so each group runs from long
    to short, and its batches carry more padding (on the SST-2 benchmark's rows 9%, here 2%).
    The longest batch goes first, so that a batch too big for the GPU fails at once.
    """
    rows = torch.randperm(len(lengths), generator=g).tolist()
    rows.sort(key=lengths.__getitem__, reverse=True)
    full = len(rows) // batch_size
    batches = [rows[i * batch_size:(i + 1) * batch_size] for i in range(full)]
    shuffled = [batches[1 + i] for i in torch.randperm(max(full - 1, 0), generator=g).tolist()]
    # the longest batch first; a short last batch (the shortest rows) stays last, or the
    # DataLoader's cuts would no longer fall between our batches
    return [i for b in batches[:1] + shuffled for i in b] + rows[full * batch_size:]


class EpochSampler(DistributedSampler):
    """Shuffled rows (length-grouped batches when `lengths` is given), reshuffled each epoch.

    Unlike a sampler that draws from one generator for the whole run, epoch e's order depends only
    on (seed, e): a run resumed at epoch e gets it without replaying earlier epochs. `skip` moves
    the first rows of the next iteration (the batches a resumed run already trained on) to its
    end, where Lightning's batch count stops short of them. Lightning calls `set_epoch`.

    Under DDP (`world` > 1) process `rank` takes rows rank, rank + world, ... of the order, so each
    group of batch_size rows (pass the global batch: per-process batch x world) gives every
    process a batch of similar lengths. A DistributedSampler, so that Lightning keeps it: it would
    otherwise wrap it in one that shuffles positions, undoing the grouping and the resume order.
    """

    def __init__(self, n: int, seed: int, batch_size: int, lengths: list[int] | None = None,
                 rank: int = 0, world: int = 1):
        super().__init__(range(n), num_replicas=world, rank=rank, shuffle=False, seed=seed)
        self.n, self.batch_size, self.lengths = n, batch_size, lengths
        self.skip = 0

    def order(self, epoch: int) -> list[int]:
        g = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        if self.lengths is not None:
            return length_grouped(self.lengths, self.batch_size, g)
        return torch.randperm(self.n, generator=g).tolist()

    def __iter__(self):
        start, self.skip = self.skip, 0
        order = self.order(self.epoch)
        order = order[start:] + order[:start]
        order += order[:self.total_size - len(order)]  # every process gets as many rows
        return iter(order[self.rank::self.num_replicas])

    def __len__(self) -> int:
        return self.num_samples
