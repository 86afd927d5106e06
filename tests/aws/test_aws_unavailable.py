"""The unavailable-offerings memory: expiry on the injected clock and its JSON round trip."""

from __future__ import annotations

import json

import pytest

from autoscaler.unavailable import UnavailableOfferings
from core.errors import ConfigError
from tests.aws.conftest import Clock


def test_a_marked_pair_is_unavailable_until_its_ttl_passes(clock: Clock) -> None:
    memory = UnavailableOfferings(180, clock)
    memory.mark("g5.xlarge", "subnet-a")

    assert memory.is_unavailable("g5.xlarge", "subnet-a")
    assert not memory.is_unavailable("g5.xlarge", "subnet-b")
    assert not memory.is_unavailable("g6.xlarge", "subnet-a")
    assert memory.until("g5.xlarge", "subnet-a") == clock() + 180
    clock.advance(179.9)
    assert memory.is_unavailable("g5.xlarge", "subnet-a")
    clock.advance(0.1)
    assert not memory.is_unavailable("g5.xlarge", "subnet-a")
    assert memory.until("g5.xlarge", "subnet-a") is None
    assert memory.to_json() == []


def test_marking_again_extends_the_expiry(clock: Clock) -> None:
    memory = UnavailableOfferings(60, clock)
    memory.mark("t3.micro", None)
    clock.advance(50)
    memory.mark("t3.micro", None)
    clock.advance(50)
    assert memory.is_unavailable("t3.micro", None)


def test_json_round_trip_keeps_live_entries_only(clock: Clock) -> None:
    memory = UnavailableOfferings(100, clock)
    memory.mark("a", "s1")
    clock.advance(60)
    memory.mark(None, "s2")  # the template's type in an explicit subnet

    restored = UnavailableOfferings(100, clock)
    restored.load_json(json.loads(json.dumps(memory.to_json())))
    assert restored.to_json() == memory.to_json()
    assert restored.is_unavailable("a", "s1")
    assert restored.is_unavailable(None, "s2")

    clock.advance(41)
    assert restored.to_json() == [{"instance_type": None, "subnet": "s2", "until": clock() + 59}]


def test_malformed_state_is_dropped_and_far_expiries_are_capped(clock: Clock) -> None:
    memory = UnavailableOfferings(100, clock)
    memory.load_json(
        [
            {"instance_type": "a", "subnet": "s", "until": clock() + 10_000},
            {"instance_type": 3, "subnet": "s", "until": clock() + 10},
            {"instance_type": "b", "subnet": "s", "until": "soon"},
            {"instance_type": "c", "subnet": "s", "until": True},
            {"instance_type": "d", "subnet": "s", "until": clock() - 1},
            "junk",
        ]
    )
    assert memory.to_json() == [{"instance_type": "a", "subnet": "s", "until": clock() + 100}]

    memory.load_json({"not": "a list"})
    assert memory.to_json() == []


def test_ttl_must_be_positive(clock: Clock) -> None:
    with pytest.raises(ConfigError, match="ttl_s"):
        UnavailableOfferings(0, clock)
