"""Faded histograms of durations on log-spaced bins, the memory behind learned keep-alive and surges.

Bins: ``[0, 1)`` s, then a factor sqrt(2) per bin up to 2**20 s (12 days), then the rest.
Each new value weighs 1 and earlier ones fade by :data:`FADE`, so about the last 64 count.
Everything is tuples of floats, so a histogram survives in JSON from one cron run to the next.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

EDGES: tuple[float, ...] = (0.0, *(2.0 ** (k / 2) for k in range(41)))
N_BINS = len(EDGES)  # the last bin is open
FADE = 1.0 - 1.0 / 64


def bin_of(value_s: float) -> int:
    if value_s < 1.0:
        return 0
    return min(N_BINS - 1, 1 + math.floor(2.0 * math.log2(value_s) + 1e-9))


def lower_edge(b: int) -> float:
    return EDGES[b]


def upper_edge(b: int) -> float:
    return EDGES[b + 1] if b + 1 < N_BINS else math.inf


def faded(values: tuple[float, ...], b: int, x: float) -> tuple[float, ...]:
    """``values`` faded once, with ``x`` added to bin ``b``."""
    return tuple(v * FADE + (x if k == b else 0.0) for k, v in enumerate(values))


@dataclass(frozen=True, slots=True)
class Durations:
    """How long something lasted, e.g. the arrivals of a surge."""

    weight: tuple[float, ...] = (0.0,) * N_BINS
    seen: int = 0

    def record(self, value_s: float) -> Durations:
        return Durations(faded(self.weight, bin_of(value_s), 1.0), self.seen + 1)

    def remaining(self, age_s: float, quantile: float, min_weight: float) -> float | None:
        """How much longer something that has lasted ``age_s`` lasts, at ``quantile`` of the
        values seen that lasted that long (log-uniform within a bin); ``None`` when fewer than
        ``min_weight`` of them did, or the answer lies in the open last bin."""
        tail = [0.0] * (N_BINS + 1)  # tail[b]: weight of bins b and above
        for b in range(N_BINS - 1, -1, -1):
            tail[b] = tail[b + 1] + self.weight[b]
        start = bin_of(age_s)
        lo0, hi0 = math.log(max(lower_edge(start), 1e-3)), math.log(upper_edge(start)) if start + 1 < N_BINS else 0.0
        inside = self.weight[start] * ((hi0 - math.log(max(age_s, 1e-3))) / (hi0 - lo0) if start + 1 < N_BINS else 1.0)
        alive = tail[start + 1] + inside
        if alive < min_weight:
            return None
        goal = (1.0 - quantile) * alive
        for b in range(start, N_BINS - 1):
            if tail[b + 1] > goal:
                continue
            # The goal is reached inside bin b: solve tail[b+1] + w * (ln hi - ln x) / (ln hi - ln lo) = goal.
            lo = max(lower_edge(b), age_s, 1e-3)
            hi = upper_edge(b)
            w = self.weight[b] * (math.log(hi) - math.log(lo)) / (math.log(hi) - math.log(max(lower_edge(b), 1e-3)))
            if w <= 0.0:
                return lo - age_s
            x = math.exp(math.log(hi) - (goal - tail[b + 1]) / w * (math.log(hi) - math.log(lo)))
            return max(0.0, x - age_s)
        return None

    def to_dict(self) -> dict[str, Any]:
        return {"weight": list(self.weight), "seen": self.seen}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Durations:
        return cls(bins(d["weight"]), int(d["seen"]))


def bins(values: Any) -> tuple[float, ...]:
    """A histogram's per-bin values read back from JSON; ``ValueError`` if the shape is wrong."""
    out = tuple(float(x) for x in values)
    if len(out) != N_BINS:
        raise ValueError(f"histogram of {len(out)} bins, expected {N_BINS}")
    return out
