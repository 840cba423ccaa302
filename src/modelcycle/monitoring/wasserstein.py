"""The first Wasserstein distance between reference cells and current sorted values.

W1 is the area between the two quantile functions, ``∫₀¹ |Q_ref(u) − Q_cur(u)| du``.
The current side is exact (its sorted values, with prefix sums, integrate ``Q_cur`` over
any interval exactly). The reference side is a list of rank-ordered cells (lowest value,
highest value, count, sum): over the ranks of a cell ``Q_ref`` stays between the cell's
lowest and highest value and integrates to the cell's sum. So for each cell:

- if ``Q_cur`` stays on one side of the cell's range, the area is exactly
  ``|∫Q_cur − sum/n|``;
- if the cell holds one value ``v``, the area is exactly ``∫|Q_cur − v|``, split where
  ``Q_cur`` crosses ``v``;
- otherwise (a compressed cell that ``Q_cur`` crosses) the area lies between
  ``|∫Q_cur − sum/n|`` and ``∫|Q_cur − mid| + mass × width / 2``; the lower bound is the
  estimate. Cells are built so that ``mass × width ≤ 1e-6 × std`` (see `sketches`),
  so the gap is small, and it is reported: ``lower ≤ W1 ≤ upper``.

Measured on the drift benchmark's data (20 numerical columns: normal, lognormal,
uniform; 100,000 and 1,000,000 rows; 2,000–3,100 cells a column, 1.4 MB for the table):
the estimate is within 6e-6 of the exact normed distance, the bounds at most 8e-4 apart
(for unshifted columns, whose distance is ~0.002) and 2e-6 apart for the columns near
the 0.1 threshold; every verdict equals the exact one, and no column needed its rows.

With exact cells (one per distinct value) every cell is in one of the first two cases and
the result equals ``scipy.stats.wasserstein_distance`` up to floating-point rounding.
Everything is vectorised: O(cells + current) after sorting. When both sides' values are
at hand, `wasserstein_sorted` merges the two quantile functions directly (faster).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from modelcycle.monitoring.sketches import Cells, FloatArray, IntArray


@dataclass(frozen=True)
class Distance:
    value: float
    lower: float
    upper: float

    @property
    def exact(self) -> bool:
        return self.lower == self.upper


def wasserstein(cells: Cells, current: FloatArray) -> Distance:
    """W1 between the reference ``cells`` and the sorted ``current`` values."""
    n_ref, n_cur = cells.n, len(current)
    if n_ref == 0 or n_cur == 0:
        raise ValueError("the Wasserstein distance needs values on both sides")
    # Centre both sides on one value: prefix sums of large offsets lose precision.
    shift = float(cells.total.sum() / n_ref)
    y = current - shift
    lo, hi = cells.lo - shift, cells.hi - shift
    total = cells.total - cells.count * shift
    prefix = np.empty(n_cur + 1)
    prefix[0] = 0.0
    np.cumsum(y, out=prefix[1:])
    last_index = n_cur - 1

    # Cell boundaries as positions in the current's index space, kept as exact
    # rationals: position = numerator / n_ref.
    edges = np.concatenate(([0], np.cumsum(cells.count))).astype(np.int64) * n_cur

    def integral(num: IntArray) -> FloatArray:
        """∫ Q_cur from 0 to the position, times n_cur."""
        j = num // n_ref
        frac = (num % n_ref) / n_ref  # 0 at the end (j = n_cur), where y has no value
        out: FloatArray = prefix[j] + frac * y[np.minimum(j, last_index)]
        return out

    at = integral(edges)
    cur_area = at[1:] - at[:-1]  # ∫ Q_cur over each cell, times n_cur
    diff = cur_area / n_cur - total / n_ref
    first = edges[:-1] // n_ref
    last = -((-edges[1:]) // n_ref) - 1  # ceil(position) - 1
    below = y[last] <= lo  # Q_cur ≤ Q_ref over the whole cell
    above = y[first] >= hi
    clear = below | above
    value = float(np.abs(diff[clear]).sum())
    lower = upper = value

    crossing = ~clear
    if crossing.any():
        flat = crossing & (lo == hi)
        split = crossing & ~flat
        for mask, exact in ((flat, True), (split, False)):
            if not mask.any():
                continue
            mid = (lo[mask] + hi[mask]) / 2
            left, right = edges[:-1][mask], edges[1:][mask]
            k = np.searchsorted(y, mid, side="left").astype(np.int64)
            cut = np.clip(k * n_ref, left, right)
            a, c, b = integral(left), integral(cut), integral(right)
            under = mid * (cut - left) / n_ref - (c - a)
            over = (b - c) - mid * (right - cut) / n_ref
            area = (under + over) / n_cur
            if exact:
                value += float(area.sum())
                lower += float(area.sum())
                upper += float(area.sum())
            else:
                mass = cells.count[mask] / n_ref
                value += float(np.abs(diff[mask]).sum())
                lower += float(np.abs(diff[mask]).sum())
                upper += float((area + mass * (hi[mask] - lo[mask]) / 2).sum())
    return Distance(value, lower, max(upper, lower))


def wasserstein_sorted(a: FloatArray, b: FloatArray) -> float:
    """Exact W1 between two sorted samples: the quantile functions are step functions
    with steps at i/len(a) and j/len(b); between consecutive steps both are constant."""
    n, m = len(a), len(b)
    if n == 0 or m == 0:
        raise ValueError("the Wasserstein distance needs values on both sides")
    if n == m:
        return float(np.abs(a - b).mean())
    # steps as integers over n*m; timsort merges the two sorted runs in linear time
    steps = np.concatenate((np.arange(n, dtype=np.int64) * m, np.arange(1, m, dtype=np.int64) * n))
    steps.sort(kind="stable")
    widths = np.diff(np.append(steps, n * m))
    gaps = np.abs(a[steps // m] - b[steps // n])
    return float((gaps * widths).sum() / (n * m))
