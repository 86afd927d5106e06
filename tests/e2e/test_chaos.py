"""A bounded chaos run: jobs over HTTP while a worker, a dispatcher, the API and Valkey are SIGKILLed.

It is ``python -m bench chaos`` with fewer jobs and one kill of each kind; the invariants are
the benchmark's own checks (``bench/chaos.py``), and every one that breaks is a violation.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.chaos import KINDS, Plan, run_chaos

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(170)]


def test_no_job_lost_or_run_twice_and_nothing_orphaned_while_processes_are_killed(tmp_path: Path) -> None:
    plan = Plan(jobs=250, rounds=1, workers=3, clients=10, max_s=45, settle_s=30, seed=11)
    doc = run_chaos(plan, tmp_path)
    assert doc["violations"] == [], doc
    jobs = doc["jobs"]
    assert jobs["accepted"] >= plan.jobs
    assert jobs["terminal"] + jobs["lost_in_aof_window"] == jobs["accepted"]
    assert sorted(k["kind"] for k in doc["kills"]) == sorted(KINDS)
    assert all(k["recovered_s"] is not None for k in doc["kills"])
    # The killed worker's registration and jobs were taken back by the reaper, not left behind.
    assert all(k["reaped_s"] is not None for k in doc["kills"] if k["kind"] == "worker")
    assert (tmp_path / doc["plot"]).stat().st_size > 0
