"""How long ``tidal up`` waits before restarting a child, exit after exit."""

from __future__ import annotations

import pytest

from launcher.restarts import RestartPolicy

POLICY = RestartPolicy(first_s=0.25, factor=2.0, max_s=30.0, stable_s=10.0)


@pytest.mark.parametrize(
    ("history", "delays"),
    [
        # (ran_s of each run) -> the delay before each restart
        ([60.0], [0.25]),  # one kill after a long run: back at once
        ([60.0, 0.5, 0.5, 0.5], [0.25, 0.5, 1.0, 2.0]),  # keeps crashing at start: doubling
        ([0.1] * 12, [0.25, 0.5, 1, 2, 4, 8, 16, 30, 30, 30, 30, 30]),  # capped, never a tight loop
        ([0.5, 0.5, 0.5, 12.0, 0.5], [0.25, 0.5, 1.0, 0.25, 0.5]),  # a stable run starts the count over
    ],
)
def test_backoff_grows_while_a_child_keeps_crashing_and_resets_once_it_ran_stably(
    history: list[float], delays: list[float]
) -> None:
    crashes, got = 0, []
    for ran_s in history:
        delay, crashes = POLICY.after_exit(crashes, ran_s)
        got.append(delay)
    assert got == delays
