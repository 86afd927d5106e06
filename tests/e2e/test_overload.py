"""Submitting far beyond ``max_queue_len``: 429 with Retry-After, bounded memory, earlier jobs still finish.

``python -m bench overload`` for a few seconds; the full run's figures are in the issue note.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.overload import Plan, run_overload

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(170)]


def test_overload_is_refused_with_retry_after_and_memory_stays_bounded(tmp_path: Path) -> None:
    plan = Plan(seconds=8, clients=16)
    doc = run_overload(plan, tmp_path)
    statuses = doc["by_status"]
    assert set(statuses) <= {"202", "429"}, statuses  # no 5xx, no dropped connection
    assert statuses["429"] > statuses.get("202", 0)
    assert doc["retry_after_s"]["missing"] == 0 and doc["retry_after_s"]["min"] >= 1
    assert doc["backlog_max"] <= plan.max_queue_len
    # Everything let in, before or during the overload, finished.
    assert doc["pre_jobs"] == {"succeeded": doc["config"]["pre_jobs"]}
    assert set(doc["jobs_let_in_during"]) <= {"succeeded"}
    # A refused request stores nothing: the backlog's bound bounds Redis, and the API keeps no per-request state.
    redis_mem, rss = doc["redis_used_memory"], doc["api_rss_kb"]
    assert redis_mem["max"] - redis_mem["start"] < 16 * 2**20, redis_mem
    assert rss["max"] - rss["start"] < 64 * 1024, rss
