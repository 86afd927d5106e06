"""Synthetic job streams for simulations: arrival times, work and session ids.

Work is in seconds on a speed-1 worker, scaled to mean 1 so that a fleet's capacity in jobs
per second is the sum of its speeds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bench.trace import Trace

# Zipf exponent of session popularity: a few chatty sessions and a long tail.
SESSION_ZIPF_S = 1.1


@dataclass(frozen=True, slots=True)
class Jobs:
    arrival: np.ndarray
    work: np.ndarray
    session: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.arrival.size)


def sessions(n: int, n_sessions: int, rng: np.random.Generator) -> tuple[str, ...]:
    ranks = np.arange(1, n_sessions + 1, dtype=float)
    p = ranks**-SESSION_ZIPF_S
    picks = rng.choice(n_sessions, size=n, p=p / p.sum())
    return tuple(f"s{k}" for k in picks)


def poisson(n: int, rate: float, n_sessions: int, rng: np.random.Generator) -> Jobs:
    """Poisson arrivals at ``rate`` per second, exponential work (an M/M/k-style stream)."""
    arrival = np.cumsum(rng.exponential(1.0 / rate, size=n))
    work = rng.exponential(1.0, size=n)
    return Jobs(arrival, work, sessions(n, n_sessions, rng))


def replay(trace: Trace, n: int, rate: float, n_sessions: int, rng: np.random.Generator) -> Jobs:
    """The trace's arrival pattern and service times, time-scaled to ``rate`` per second.

    The trace is repeated end to end when more than its length of jobs is wanted, so the
    burstiness of the original carries over at every size.
    """
    gaps = np.diff(trace.arrival_s, prepend=0.0)
    gaps[0] = trace.duration_s / max(len(trace) - 1, 1)
    reps = -(-n // len(trace))
    all_gaps = np.tile(gaps, reps)[:n]
    scale = (len(trace) / (gaps.sum())) / rate
    arrival = np.cumsum(all_gaps * scale)
    work = np.tile(trace.service_s / trace.service_s.mean(), reps)[:n]
    return Jobs(arrival, work, sessions(n, n_sessions, rng))
