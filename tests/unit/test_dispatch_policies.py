"""Table-driven tests of the pure dispatch policies."""

from __future__ import annotations

from collections import Counter

import pytest

from dispatcher.policies import HASH_LOAD_FACTOR, Candidate, PolicyState, choose

C = Candidate


@pytest.mark.parametrize(
    ("policy", "cands", "expected"),
    [
        # least-backlog: lowest (queued + running) / weight
        ("least-backlog", [C("a", queued=2, room=3), C("b", running=1, room=3)], "b"),
        ("least-backlog", [C("a", weight=4, queued=3, room=2), C("b", queued=1, room=2)], "a"),
        ("least-backlog", [C("a", room=0), C("b", queued=5, room=1)], "b"),
        ("least-backlog", [C("slow", weight=1), C("fast", weight=4)], "fast"),  # all idle: the fastest
        ("least-backlog", [C("slow", weight=1), C("fast", weight=4, queued=3, room=1)], "fast"),
        ("least-backlog", [C("slow", weight=1), C("fast", weight=4, queued=4, room=1)], "slow"),
        # least-connections ignores weight
        ("least-connections", [C("a", weight=4, queued=3, room=2), C("b", queued=1, room=2)], "b"),
        # least-latency: expected finish = ewma * (outstanding + 1) / slots
        ("least-latency", [C("a", ewma_run_s=1.0, room=2), C("b", ewma_run_s=0.2, queued=1, room=2)], "b"),
        ("least-latency", [C("a", ewma_run_s=0.1, queued=3, room=2), C("b", ewma_run_s=1.0, room=2)], "a"),
        ("least-latency", [C("a", ewma_run_s=0.5, room=2), C("new", room=2)], "new"),
        ("least-latency", [C("a", ewma_run_s=1.0, slots=4, queued=2, room=2), C("b", ewma_run_s=1.0, room=1)], "a"),
        # round-robin and weighted start at the first worker (by id) with room
        ("round-robin", [C("b"), C("a")], "a"),
        ("round-robin", [C("a", room=0), C("b")], "b"),
        ("weighted", [C("a", weight=1), C("b", weight=3)], "b"),
        # random: u picks along the cumulative weights
        ("random", [C("a", weight=1), C("b", weight=3)], "a"),
    ],
)
def test_single_choice(policy: str, cands: list[Candidate], expected: str) -> None:
    got, _ = choose(policy, cands, PolicyState(), session=None, u=0.1)
    assert got == expected


@pytest.mark.parametrize("policy", ["least-backlog", "weighted", "round-robin", "least-connections",
                                    "least-latency", "hash", "random"])
def test_no_room_anywhere_gives_none(policy: str) -> None:
    state = PolicyState(cursor=3)
    got, nxt = choose(policy, [C("a", room=0), C("b", room=0)], state, session="s", u=0.5)
    assert got is None
    assert nxt == state
    assert choose(policy, [], state)[0] is None


def _run(policy: str, cands: list[Candidate], n: int, **kw: object) -> list[str]:
    state, picks = PolicyState(), []
    for i in range(n):
        got, state = choose(policy, cands, state, u=(i * 0.618) % 1.0, **kw)  # type: ignore[arg-type]
        assert got is not None
        picks.append(got)
    return picks


def test_smooth_weighted_round_robin_hits_exact_proportions_and_interleaves() -> None:
    cands = [C("a", weight=5), C("b", weight=1), C("c", weight=1)]
    picks = _run("weighted", cands, 7 * 20)
    assert Counter(picks) == {"a": 100, "b": 20, "c": 20}
    # nginx's smooth sequence for 5:1:1 is a a b a c a a — never five a's in a row.
    assert picks[:7] == ["a", "a", "b", "a", "c", "a", "a"]


def test_weighted_skips_full_workers_without_losing_its_place() -> None:
    state = PolicyState()
    got, state = choose("weighted", [C("a", weight=2), C("b", weight=1)], state)
    assert got == "a"
    got, state = choose("weighted", [C("a", weight=2, room=0), C("b", weight=1)], state)
    assert got == "b"


def test_round_robin_cycles() -> None:
    assert _run("round-robin", [C("a"), C("b"), C("c")], 6) == ["a", "b", "c", "a", "b", "c"]


def test_least_backlog_spreads_ties() -> None:
    assert set(_run("least-backlog", [C("a"), C("b"), C("c")], 3)) == {"a", "b", "c"}


def test_random_follows_weights() -> None:
    picks = Counter(_run("random", [C("a", weight=1), C("b", weight=3)], 4000))
    assert 0.2 < picks["a"] / 4000 < 0.3


def test_hash_keeps_affinity_per_session() -> None:
    cands = [C(f"w{i}", room=10) for i in range(8)]
    owners = {s: choose("hash", cands, PolicyState(), session=s)[0] for s in (f"user-{k}" for k in range(200))}
    assert all(choose("hash", cands, PolicyState(), session=s)[0] == w for s, w in owners.items())
    assert len(set(owners.values())) == 8  # sessions spread over the fleet


def test_hash_moves_few_sessions_when_a_worker_leaves() -> None:
    cands = [C(f"w{i}", room=10) for i in range(8)]
    sessions = [f"user-{k}" for k in range(400)]
    before = {s: choose("hash", cands, PolicyState(), session=s)[0] for s in sessions}
    after = {s: choose("hash", cands[1:], PolicyState(), session=s)[0] for s in sessions}
    moved = [s for s in sessions if before[s] != after[s]]
    assert all(before[s] == "w0" for s in moved)


def test_hash_respects_its_load_bound() -> None:
    cands = [C("w0", room=50), C("w1", room=50), C("w2", room=50), C("w3", room=50)]
    owner = choose("hash", cands, PolicyState(), session="hot")[0]
    # Put the hot session's owner far above the bound: the session spills to another worker.
    loaded = [C(c.id, queued=20 if c.id == owner else 0, room=50) for c in cands]
    total = 20 + 1
    assert HASH_LOAD_FACTOR * total / 4 < 20 + 1
    spill = choose("hash", loaded, PolicyState(), session="hot")[0]
    assert spill is not None and spill != owner


def test_hash_without_session_falls_back_to_least_backlog() -> None:
    got, _ = choose("hash", [C("a", queued=3, room=5), C("b", room=5)], PolicyState(), session=None)
    assert got == "b"


def test_policies_are_pure() -> None:
    cands = [C("a", weight=2), C("b")]
    state = PolicyState()
    first = choose("weighted", cands, state)
    assert choose("weighted", cands, state) == first
    assert state == PolicyState()
