"""Batch samplers that group by length for speed without the accuracy cost of sorted batch cycles.

Training: shuffle all indices, cut them into groups of `group_batches` global batches, sort each group by
length and cut it into global batches (little padding), then shuffle the order of all batches. HF's
LengthGroupedSampler keeps each group's batches in long-to-short order, so batch lengths cycle through the
epoch; shuffling whole batches breaks the cycle and keeps the padding savings.

Distribution is handled here rather than by Lightning's sampler injection (the CLI sets
`trainer.use_distributed_sampler=false`): a global batch of `batch_size * world_size` examples is formed first
and rank `r` takes every `world_size`-th example of it, so the examples of each optimizer step are the same
for any number of processes at the same global batch size.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Sampler

from lit_ft.errors import UserError


class LengthGroupedBatchSampler(Sampler[list[int]]):
    """Shuffled, length-grouped training batches for one rank.

    Args:
        lengths: Token count of every example.
        batch_size: Examples per batch on each rank.
        seed: Base seed; the epoch is added so each epoch has its own order (same on every rank).
        group_batches: Global batches per sorted group (at most a quarter of the epoch); 1 means random batches.
        rank: This process's rank.
        world_size: Number of processes.
        drop_last: Drop the last global batch when it is smaller than the others.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        seed: int = 0,
        group_batches: int = 50,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = False,
    ) -> None:
        if batch_size < 1 or group_batches < 1:
            raise UserError(f"batch_size and group_batches must be >= 1, got {batch_size} and {group_batches}")
        self.lengths = list(lengths)
        self.per_rank = batch_size
        self.seed = seed
        self.group_batches = group_batches
        self.rank = rank
        self.world_size = world_size
        self.drop_last = drop_last
        self.epoch = 0
        self._skip = 0  # batches of `self.epoch` already trained (set by load_state_dict on resume)
        # Lightning calls `set_epoch` on `batch_sampler.sampler` (not on the batch sampler) at each epoch start
        self.sampler = _EpochHook(self)

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self._skip = 0
        self.epoch = epoch

    def state_dict(self, batches_done: int) -> dict[str, int]:
        """The position to resume from: this epoch and how many of its batches were trained."""
        return {"epoch": self.epoch, "batches_done": batches_done}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continue after `batches_done` batches of `epoch` (the next epoch when that one was complete)."""
        self.epoch, self._skip = int(state["epoch"]), int(state["batches_done"])
        if self._skip >= len(self):
            self.epoch, self._skip = self.epoch + 1, 0

    def global_batches(self) -> list[list[int]]:
        """This epoch's global batches, identical on every rank."""
        gen = torch.Generator().manual_seed(self.seed + self.epoch)
        perm = torch.randperm(len(self.lengths), generator=gen).tolist()
        size = self.per_rank * self.world_size
        # at most a quarter of the epoch per group, so small data sets still get different batches each epoch
        group = size * max(1, min(self.group_batches, len(perm) // (4 * size)))
        batches: list[list[int]] = []
        for start in range(0, len(perm), group):
            chunk = perm[start : start + group]
            if self.group_batches > 1:
                chunk.sort(key=self.lengths.__getitem__)
            batches.extend(chunk[i : i + size] for i in range(0, len(chunk), size))
        if batches and len(batches[-1]) < size:
            if self.drop_last:
                batches.pop()
            elif len(batches[-1]) < self.world_size:  # every rank needs at least one example
                batches[-1] = (batches[-1] + perm)[: self.world_size]
        order = torch.randperm(len(batches), generator=gen).tolist()
        return [batches[i] for i in order]

    def __iter__(self) -> Iterator[list[int]]:
        skip, self._skip = self._skip, 0  # a resumed epoch skips its trained batches once
        for batch in self.global_batches()[skip:]:
            yield batch[self.rank :: self.world_size]

    def __len__(self) -> int:
        size = self.per_rank * self.world_size
        return len(self.lengths) // size if self.drop_last else math.ceil(len(self.lengths) / size)


class _EpochHook:
    def __init__(self, owner: LengthGroupedBatchSampler) -> None:
        self.owner = owner

    def set_epoch(self, epoch: int) -> None:
        self.owner.set_epoch(epoch)


class ShardedEvalBatchSampler(Sampler[list[int]]):
    """Evaluation batches sorted by length, split across ranks without repeating any example.

    Every example is seen exactly once over all ranks (no padding duplicates), so metrics synced at epoch end
    equal the single-process result. Order does not matter: predictions carry their input's id.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, rank: int = 0, world_size: int = 1) -> None:
        order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
        # at least one batch per rank, so every rank takes part in the epoch-end metric sync
        size = max(1, min(batch_size, math.ceil(len(order) / world_size)))
        batches = [order[i : i + size] for i in range(0, len(order), size)]
        self.batches = batches[rank::world_size]

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class ResumableLoader(DataLoader):
    """A training DataLoader that Lightning saves and restores with checkpoints (its `_Stateful` hooks).

    The position saved is the number of batches the trainer has finished in this epoch (`batches_done`, read
    from the trainer when the checkpoint is written), not what the sampler has handed out: the loader runs
    ahead of training by its prefetched batches. A private generator keeps iterator creation off the global
    torch RNG, so the RNG sequence of training does not depend on when the loader was (re)started.
    """

    def __init__(self, *args: Any, batches_done: Callable[[], int], **kwargs: Any) -> None:
        kwargs.setdefault("generator", torch.Generator().manual_seed(0))
        super().__init__(*args, **kwargs)
        self._batches_done = batches_done

    def state_dict(self) -> dict[str, int]:
        sampler = self.batch_sampler
        assert isinstance(sampler, LengthGroupedBatchSampler)
        return sampler.state_dict(self._batches_done())

    def load_state_dict(self, state: dict[str, int]) -> None:
        sampler = self.batch_sampler
        assert isinstance(sampler, LengthGroupedBatchSampler)
        sampler.load_state_dict(state)
