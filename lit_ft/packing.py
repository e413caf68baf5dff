"""Packing of causal-LM training examples into rows of `max_length` tokens, without attention across examples.

Bins: each epoch's shuffled order is cut into groups (as for length-grouped batches), and each group is packed
best-fit-decreasing into bins of at most `max_length` tokens. Bins, not examples, then make the batches: a
global batch holds `batch_size * world_size` bins, rank `r` takes every `world_size`-th bin, and the order of
the global batches is shuffled. Everything depends only on the seed and the epoch, so every rank builds the same
bins, and a resumed run skips exactly the batches it had trained.

A batch is fed padding-free: all its examples concatenated in one row, `position_ids` restarting at 0 at every
example and no `attention_mask`. Transformers reads the restarts as sequence boundaries
(`masking_utils.find_packed_sequence_indices` for sdpa / eager / flex, varlen kernels for flash attention), so no
token attends to another example. The first label of every example is -100: in the unpacked batch nothing
predicts it either (the shifted loss starts at the second token), and here it would be predicted from the
previous example's last token.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Sequence
from typing import Any

import torch

from lit_ft.sampler import LengthGroupedBatchSampler
from lit_ft.task import IGNORE


def pack_bins(order: Sequence[int], lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Best-fit-decreasing: longest example first, each into the fullest bin it still fits, else a new bin.

    Ties keep `order`, so the result depends only on the order given (deterministic)."""
    ranked = sorted(order, key=lambda i: -lengths[i])  # stable: equal lengths stay in shuffled order
    bins: list[list[int]] = []
    free: list[tuple[int, int]] = []  # (room left, bin number), sorted
    for i in ranked:
        need = min(lengths[i], capacity)
        at = bisect.bisect_left(free, (need, -1))
        if at == len(free):
            bins.append([i])
            room, number = capacity - need, len(bins) - 1
        else:
            room, number = free.pop(at)
            bins[number].append(i)
            room -= need
        bisect.insort(free, (room, number))
    return bins


class PackedBatchSampler(LengthGroupedBatchSampler):
    """Training batches of `batch_size` packed rows (bins of at most `capacity` tokens) per rank.

    Args:
        lengths: Token count of every example.
        batch_size: Packed rows per batch on each rank.
        capacity: Tokens per packed row (`data.max_length`).
        **kwargs: `seed`, `group_batches`, `rank`, `world_size` of `LengthGroupedBatchSampler`.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, capacity: int, **kwargs: Any) -> None:
        super().__init__(lengths, batch_size, **kwargs)
        self.capacity = capacity
        self._bins: tuple[int, list[list[int]]] | None = None  # (epoch, its bins)

    def bins(self) -> list[list[int]]:
        """This epoch's packed rows, identical on every rank (cached per epoch)."""
        if self._bins is None or self._bins[0] != self.epoch:
            gen = torch.Generator().manual_seed(self.seed + self.epoch)
            perm = torch.randperm(len(self.lengths), generator=gen).tolist()
            # a group of about `group_batches` global batches of examples, at most a quarter of the epoch
            size = self.per_rank * self.world_size
            group = size * max(1, min(self.group_batches, len(perm) // (4 * size)))
            bins = [b for start in range(0, len(perm), group)
                    for b in pack_bins(perm[start : start + group], self.lengths, self.capacity)]
            self._bins = (self.epoch, bins)
        return self._bins[1]

    def global_batches(self) -> list[list[int]]:
        """This epoch's global batches as bin numbers (each rank takes every `world_size`-th bin)."""
        count, size = len(self.bins()), self.per_rank * self.world_size
        batches = [list(range(s, min(s + size, count))) for s in range(0, count, size)]
        if batches and len(batches[-1]) < self.world_size:  # every rank needs a row: wrap around, as unpacked
            batches[-1] = (batches[-1] + list(range(count)) * self.world_size)[: self.world_size]
        gen = torch.Generator().manual_seed(self.seed + self.epoch + 1)
        order = torch.randperm(len(batches), generator=gen).tolist()
        return [batches[i] for i in order]

    def __iter__(self) -> Iterator[list[int]]:
        skip, self._skip = self._skip, 0  # a resumed epoch skips its trained batches once
        bins = self.bins()
        for batch in self.global_batches()[skip:]:
            yield [i for b in batch[self.rank :: self.world_size] for i in bins[b]]

    def __len__(self) -> int:
        size = self.per_rank * self.world_size
        return -(-len(self.bins()) // size)


def flatten(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """One padding-free row of the examples' `input_ids` and `labels`, `position_ids` restarting per example."""
    ids: list[int] = []
    labels: list[int] = []
    positions: list[int] = []
    for row in rows:
        ids += row["input_ids"]
        labels += [IGNORE, *row["labels"][1:]]
        positions += range(len(row["input_ids"]))
    # no attention_mask: with one, Transformers would not look for packed sequences; no cache: with one, neither
    return {"input_ids": torch.tensor([ids]), "labels": torch.tensor([labels]),
            "position_ids": torch.tensor([positions]), "use_cache": False}


def fill(lengths: Sequence[int], bins: list[list[int]], capacity: int) -> tuple[int, float]:
    """Packed rows and the fraction of their `capacity` tokens left empty (what padding them would cost)."""
    used = sum(lengths[i] for b in bins for i in b)
    return len(bins), (1 - used / (len(bins) * capacity)) if bins else 0.0
