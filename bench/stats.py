"""Percentiles of a handful of samples, and how they are written down."""

import statistics
from dataclasses import dataclass


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100), interpolated between the closest ranks."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class Distribution:
    """Seconds, as measured; p50 and p95 over all samples."""

    samples: list[float]
    p50: float
    p95: float
    mean: float

    @classmethod
    def of(cls, samples: list[float]) -> "Distribution":
        return cls(
            samples=[round(s, 4) for s in samples],
            p50=percentile(samples, 50),
            p95=percentile(samples, 95),
            mean=statistics.fmean(samples),
        )
