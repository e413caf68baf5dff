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
    rows: list[tuple[int, int, int, bool]] = []  # runs of empty bins merged, the bin holding `limit` kept apart
    for i, count in enumerate(counts):
        low, high = i * step + 1, (i + 1) * step
        holds_limit = limit is not None and low <= limit <= high
        if rows and count == 0 and rows[-1][2] == 0 and not rows[-1][3] and not holds_limit:
            rows[-1] = (rows[-1][0], high, 0, False)
        else:
            rows.append((low, high, count, holds_limit))
    label_width = max(len(f"{low}-{high}") for low, high, _, _ in rows)
    lines = []
    for low, high, count, holds_limit in rows:
        bar = BAR * math.ceil(width * count / peak) if count else ""
        mark = f"  <- max_length {limit}" if holds_limit else ""
        lines.append(f"{f'{low}-{high}':>{label_width}} {bar:<{width}} {count:,}{mark}")
    return lines
