"""Dispatch rules as pure functions.

``choose(policy, candidates, state, session=..., u=...)`` returns the id of the worker that
gets the next job (or ``None`` when no candidate has room) and the policy's next state.
It does no I/O; randomness comes in as ``u``, a number in [0, 1) drawn by the caller.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from core.settings import PolicyName

# Bounded-load factor for ``hash``: a worker may take a session's job while its load stays
# within this multiple of the fleet's mean load (consistent hashing with bounded loads,
# Mirrokni, Thorup & Zadimoghaddam 2018).
HASH_LOAD_FACTOR = 1.25


@dataclass(frozen=True, slots=True)
class Candidate:
    """A live, ready worker of the job's model, as the dispatcher last saw it."""

    id: str
    weight: float = 1.0
    slots: int = 1
    queued: int = 0
    running: int = 0
    room: int = 1
    ewma_run_s: float | None = None

    @property
    def outstanding(self) -> int:
        return self.queued + self.running


@dataclass(frozen=True, slots=True)
class PolicyState:
    cursor: int = 0
    wrr: Mapping[str, float] = field(default_factory=dict)


Choice = tuple[str | None, PolicyState]


def _open(candidates: Sequence[Candidate]) -> list[Candidate]:
    return sorted((c for c in candidates if c.room > 0), key=lambda c: c.id)


def _rotate_argmin(
    open_: list[Candidate], state: PolicyState, key: Callable[[Candidate], float]
) -> Choice:
    """Lowest ``key``; ties go round the workers so equal ones share the load."""
    best = min(key(c) for c in open_)
    tied = [c for c in open_ if math.isclose(key(c), best, rel_tol=1e-12, abs_tol=1e-12)]
    pick = tied[state.cursor % len(tied)]
    return pick.id, replace(state, cursor=state.cursor + 1)


def least_backlog(open_: list[Candidate], state: PolicyState, session: str | None, u: float) -> Choice:
    # Counting the job being placed (+1) makes idle workers differ by weight: with every
    # worker idle the job goes to the fastest, not to whichever is next in turn.
    return _rotate_argmin(open_, state, lambda c: (c.outstanding + 1) / c.weight)


def least_connections(open_: list[Candidate], state: PolicyState, session: str | None, u: float) -> Choice:
    return _rotate_argmin(open_, state, lambda c: float(c.outstanding))


def least_latency(open_: list[Candidate], state: PolicyState, session: str | None, u: float) -> Choice:
    # Expected time until a new job would finish there: a worker never measured counts as
    # instant, so new workers get traffic and a measurement.
    def expected(c: Candidate) -> float:
        run = c.ewma_run_s or 0.0
        return run * (c.outstanding + 1) / c.slots

    return _rotate_argmin(open_, state, expected)


def round_robin(open_: list[Candidate], state: PolicyState, session: str | None, u: float) -> Choice:
    pick = open_[state.cursor % len(open_)]
    return pick.id, replace(state, cursor=state.cursor + 1)


def weighted(open_: list[Candidate], state: PolicyState, session: str | None, u: float) -> Choice:
    """nginx's smooth weighted round robin over the workers that have room."""
    total = sum(c.weight for c in open_)
    current = {c.id: state.wrr.get(c.id, 0.0) + c.weight for c in open_}
    # Highest credit wins; ties go to the earliest (open_ is sorted by id).
    _, _, pick = max((current[c.id], -i, c) for i, c in enumerate(open_))
    current[pick.id] -= total
    return pick.id, replace(state, wrr=current)


def random_pick(open_: list[Candidate], state: PolicyState, session: str | None, u: float) -> Choice:
    weights = [c.weight for c in open_]
    target = u * sum(weights)
    acc = 0.0
    for c, w in zip(open_, weights, strict=True):
        acc += w
        if target < acc:
            return c.id, state
    return open_[-1].id, state


def _score(session: str, worker_id: str, weight: float) -> float:
    digest = hashlib.blake2b(f"{session}\x00{worker_id}".encode(), digest_size=8).digest()
    h = (int.from_bytes(digest, "big") + 0.5) / 2**64
    return -weight / math.log(h)  # weighted rendezvous hashing


def hash_affinity(open_: list[Candidate], state: PolicyState, session: str | None, u: float) -> Choice:
    """Rendezvous hashing on the session, skipping workers over the load bound.

    A job without a session goes to the least-backlogged worker.
    """
    if not session:
        return least_backlog(open_, state, session, u)
    total_outstanding = sum(c.outstanding for c in open_) + 1
    total_weight = sum(c.weight for c in open_)
    ranked = sorted(open_, key=lambda c: _score(session, c.id, c.weight), reverse=True)
    for c in ranked:
        bound = math.ceil(HASH_LOAD_FACTOR * total_outstanding * c.weight / total_weight)
        if c.outstanding + 1 <= bound:
            return c.id, state
    return ranked[0].id, state


POLICIES: dict[str, Callable[[list[Candidate], PolicyState, str | None, float], Choice]] = {
    "least-backlog": least_backlog,
    "weighted": weighted,
    "round-robin": round_robin,
    "least-connections": least_connections,
    "least-latency": least_latency,
    "hash": hash_affinity,
    "random": random_pick,
}

NEEDS_SESSION: frozenset[str] = frozenset({"hash"})


def choose(
    policy: PolicyName | str,
    candidates: Sequence[Candidate],
    state: PolicyState,
    *,
    session: str | None = None,
    u: float = 0.0,
) -> Choice:
    """Pick a worker for the next job. Only candidates with ``room > 0`` are eligible."""
    open_ = _open(candidates)
    if not open_:
        return None, state
    return POLICIES[policy](open_, state, session, u)
