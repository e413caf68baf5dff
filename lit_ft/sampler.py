"""Batch samplers that group by length for speed without the accuracy cost of sorted batch cycles.

Training: shuffle all indices, cut them into groups of `group_batches` global batches, sort each group by
length and cut it into global batches (little padding), then shuffle the order of all batches. HF's
LengthGroupedSampler keeps each group's batches in long-to-short order, so batch lengths cycle through the
epoch; shuffling whole batches breaks the cycle and keeps the padding savings.

Distribution is handled here rather than by Lightning's sampler injection (the CLI sets
`trainer.use_distributed_sampler=false`): a global batch of `batch_size * world_size` examples is formed first
and rank `r` takes every `world_size`-th example of it, so the examples of each optimizer step are the same
for any number of processes at the same global batch size.

Every rank gets the same number of batches, so sharded strategies (FSDP, DeepSpeed), whose collectives run inside
the forward pass, cannot wait forever on a rank that has finished. Training keeps the remainder (`drop_last`
is off by default): the last global batch may be smaller, and when it has fewer examples than ranks it wraps
around to the start of the epoch's permutation (as DistributedSampler pads), so each rank takes at least one
example; at most `world_size - 1` examples are seen twice in that epoch and none is dropped. `len()` is
the number of batches each rank yields, which Lightning's `estimated_stepping_batches` (the LR schedule's
length) divides by the accumulation. Evaluation (`ShardedEvalBatchSampler`) pads instead with flagged batches
that metrics and prediction records skip, so every example counts exactly once.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Sampler
from torch.utils.data import Dataset as TorchDataset

from lit_ft.errors import UserError
from lit_ft.rows import FEATURE, row_collate

PADDING = "_padding"  # the key that marks an evaluation batch as padding (see ShardedEvalBatchSampler)


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
            elif len(batches[-1]) < self.world_size:  # every rank needs at least one example: wrap around
                batches[-1] = (batches[-1] + perm * self.world_size)[: self.world_size]
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
    """Evaluation batches sorted by length, split across ranks so that every rank gets the same number of batches.

    The length-sorted examples are cut into `ranks x per_rank` contiguous batches of near-equal size (at most
    `batch_size`, `per_rank = ceil(n / (batch_size x world_size))`) and dealt out round-robin, so the ranks run
    their batches in lock step (sharded models need every rank in each forward pass) and no example repeats. Only
    when there are fewer examples than batches (fewer examples than ranks, or a batch size near 1) does a batch
    come out empty; it is replaced by a padding batch: the shortest example again, at index `i + n` so that
    `EvalRows` flags it and the model runs it but leaves it out of metrics and prediction records. Metrics synced
    at epoch end therefore equal the single-process result. Order does not matter: predictions carry their row (`ROW`).
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, rank: int = 0, world_size: int = 1) -> None:
        if batch_size < 1 or world_size < 1 or not 0 <= rank < world_size:
            raise UserError(f"batch_size {batch_size}, rank {rank} of world_size {world_size}: need batch_size >= 1 "
                            "and 0 <= rank < world_size")
        n = len(lengths)
        order = sorted(range(n), key=lambda i: -lengths[i])
        count = math.ceil(n / (batch_size * world_size)) * world_size
        cuts = [n * i // max(1, count) for i in range(count + 1)]
        batches = [order[a:b] or [order[-1] + n] for a, b in zip(cuts, cuts[1:], strict=False)]
        self.batches = batches[rank::world_size]

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class EvalRows(TorchDataset[dict[str, Any]]):
    """The evaluation rows a `ShardedEvalBatchSampler` indexes: row `i` for `i < n`, and row `i - n` flagged with
    `PADDING` for the padding batches (`flagged_collate` turns the flag into the batch's); each row carries its
    index in the features (`FEATURE`), which tells repeated inputs apart from a row's several windows."""

    def __init__(self, rows: Any) -> None:
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitems__(self, keys: list[int]) -> list[dict[str, Any]]:
        n = len(self.rows)
        rows = [dict(row) for row in self.rows.__getitems__([k % n for k in keys])]
        for key, row in zip(keys, rows, strict=True):
            row[FEATURE] = key % n
            if key >= n:
                row[PADDING] = True
        return rows

    def __getitem__(self, key: int) -> dict[str, Any]:
        return self.__getitems__([key])[0]


def flagged_collate(collate: Callable[[list[dict[str, Any]]], dict[str, Any]], rows: list[dict[str, Any]]
                    ) -> dict[str, Any]:
    """`collate` on rows without the padding flag; the batch gets `PADDING: True` when its rows had it (and the
    rows' `ROW` / `FEATURE` lists, see `row_collate`)."""
    padding = any([row.pop(PADDING, False) for row in rows])
    batch = row_collate(collate, rows)
    if padding:
        batch[PADDING] = True
    return batch


def is_padding(batch: dict[str, Any]) -> bool:
    """A padding batch: run it through the model (every rank must), but count it in no metric or record."""
    return bool(batch.get(PADDING, False))


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
