"""Small summary statistics shared by the experiment and ablation tables."""

from __future__ import annotations

import math
from typing import Iterable


def mean_std(xs: Iterable[float | None]) -> tuple[float, float]:
    """Mean and sample standard deviation (n - 1; 0 for one value); None and NaN are left out.

    ``(nan, nan)`` when nothing is left."""
    xs = [float(x) for x in xs if x is not None and not math.isnan(x)]
    if not xs:
        return math.nan, math.nan
    m = sum(xs) / len(xs)
    if len(xs) < 2:
        return m, 0.0
    return m, math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))
