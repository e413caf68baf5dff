"""A histogram drawn with text, for token lengths in the terminal (`lit_ft inspect-data`)."""

from __future__ import annotations

import math
from collections.abc import Sequence

BAR = "#"


def length_histogram(lengths: Sequence[int], limit: int | None, bins: int = 8, width: int = 40) -> list[str]:
    """One line per bin of equal width from 1 to `limit` (or the longest): range, bar, count; the bin holding
    `limit` is marked, as inputs there may have been cut."""
    if not lengths:
        return []
    top = max(limit or 0, max(lengths))
    step = max(1, math.ceil(top / bins))
    counts = [0] * math.ceil(top / step)
    for n in lengths:
        counts[min(max(n - 1, 0) // step, len(counts) - 1)] += 1
    peak = max(counts)
    label_width = len(f"{(len(counts) - 1) * step + 1}-{len(counts) * step}")
    lines = []
    for i, count in enumerate(counts):
        low, high = i * step + 1, (i + 1) * step
        bar = BAR * math.ceil(width * count / peak) if count else ""
        mark = f"  <- max_length {limit}" if limit is not None and low <= limit <= high else ""
        lines.append(f"{f'{low}-{high}':>{label_width}} {bar:<{width}} {count:,}{mark}")
    return lines
