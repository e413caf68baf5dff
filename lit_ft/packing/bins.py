"""Packing of causal-LM training examples into rows of `max_length` tokens, without attention across examples.

Bins: each epoch's shuffled order is cut into groups (as for length-grouped batches), and each group is packed
best-fit-decreasing into bins of at most `max_length` tokens. Bins, not examples, then make the batches: a
global batch holds `batch_size * world_size` bins, rank `r` takes every `world_size`-th bin, and the order of
the global batches is shuffled. Everything depends only on the seed and the epoch, so every rank builds the same
bins, and a resumed run skips exactly the batches it had trained.

A batch is fed as `batch_size` rows of at most `max_length` tokens, each row the examples of one bin (the batch's
examples re-packed best-fit-decreasing), `position_ids` restarting at 0 at every example and no `attention_mask`.
Transformers reads the restarts as sequence boundaries (`masking_utils.find_packed_sequence_indices`, per row, for
sdpa / eager / flex), so no token attends to another example. Rows shorter than the longest are filled with pad
tokens whose positions restart too (a segment of their own, with no loss; causal attention keeps real tokens from
ever seeing them). Rows, not one long row: a block-diagonal mask over one row of all the batch's tokens costs
attention over the whole row (8 rows of 512 tokens as one row of 4,096: 8x the attention work and a 4,096 x 4,096
mask per layer). Flash-attention's varlen kernels read packed sequences only from a single row, so for a backbone
that attends with them the rows are joined into one, pads dropped (`single_row`). The first label of every example
is -100: in the unpacked batch nothing predicts it either (the shifted loss starts at the second token), and here it
would be predicted from the previous example's last token.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Sequence
from typing import Any

import torch

from lit_ft.adapters.transformers import attn_implementation
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


def stack_bins(rows: list[dict[str, Any]], capacity: int, pad_id: int) -> dict[str, Any]:
    """The examples packed into rows of at most `capacity` tokens, `position_ids` restarting per example.

    Returns the model inputs, `row_tokens` (the real tokens of each row; the rest is padding) and `spans` (per row,
    the (start, end) of each example)."""
    bins = pack_bins(range(len(rows)), [len(r["input_ids"]) for r in rows], capacity)
    packed = []
    for members in bins:
        ids: list[int] = []
        labels: list[int] = []
        positions: list[int] = []
        spans: list[tuple[int, int]] = []
        for i in members:
            spans.append((len(ids), len(ids) + len(rows[i]["input_ids"])))
            ids += rows[i]["input_ids"]
            labels += [IGNORE, *rows[i]["labels"][1:]]
            positions += range(len(rows[i]["input_ids"]))
        packed.append((ids, labels, positions, spans))
    width = max(len(ids) for ids, _, _, _ in packed)
    filled = [(ids + [pad_id] * (width - len(ids)), labels + [IGNORE] * (width - len(ids)),
               positions + list(range(width - len(ids)))) for ids, labels, positions, _ in packed]
    # no attention_mask: with one, Transformers would not look for packed sequences; no cache: with one, neither
    inputs = {key: torch.tensor([row[k] for row in filled]) for k, key in
              enumerate(("input_ids", "labels", "position_ids"))}
    return {"inputs": {**inputs, "use_cache": False}, "row_tokens": [len(ids) for ids, _, _, _ in packed],
            "spans": [spans for _, _, _, spans in packed]}


def single_row(inputs: dict[str, Any], row_tokens: list[int]) -> dict[str, Any]:
    """Packed rows joined into one row without their padding: the layout flash-attention's varlen kernels need."""
    joined = {key: torch.cat([inputs[key][r, :n] for r, n in enumerate(row_tokens)])[None]
              for key in ("input_ids", "labels", "position_ids")}
    return {**inputs, **joined}


def packed_inputs(model: Any, batch: dict[str, Any]) -> dict[str, Any]:
    """The model's inputs for a packed batch, in the layout its attention reads example boundaries from: one row
    for flash-attention's varlen kernels; the rows and each example's span (`lit_ft.packing.attention`) for sdpa;
    the rows alone otherwise (Transformers' block-diagonal mask)."""
    inputs = batch["inputs"]
    if attends_varlen(model):
        return single_row(inputs, batch["row_tokens"])
    from lit_ft.packing.attention import SPANS, attend_per_example

    return {**inputs, SPANS: batch["spans"]} if attend_per_example(model) else inputs


def attends_varlen(model: Any) -> bool:
    """Whether the model attends with flash-attention kernels, which see packed sequences only in one row."""
    return "flash" in str(attn_implementation(model) or "")


def fill(lengths: Sequence[int], bins: list[list[int]], capacity: int) -> tuple[int, float]:
    """Packed rows and the fraction of their `capacity` tokens left empty (what padding them would cost)."""
    used = sum(lengths[i] for b in bins for i in b)
    return len(bins), (1 - used / (len(bins) * capacity)) if bins else 0.0
