"""The API's helpers on their own, with a fake store where a real server adds nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import pytest
from fastapi.exceptions import RequestValidationError

from api.routes.jobs import check_wait, parse_body, retry_after, wait_for_end
from api.waiters import CompletionWaiters
from core.fleet import FleetSnapshot, ModelLoad, WorkerState, WorkerView
from core.jobs import VIEW_FIELDS, JobField, JobRecord


def worker(wid: str, slots: int, ewma_run_s: float | None, alive: bool = True) -> WorkerView:
    return WorkerView(wid, "m", "1", 1.0, slots, "h", 1, "", WorkerState.READY, alive, 0, 0, 0.0, None, ewma_run_s, 0)


class FakeFleet:
    def __init__(self, workers: list[WorkerView]):
        self.workers = workers

    async def snapshot(self, models: Iterable[str]) -> FleetSnapshot:
        return FleetSnapshot(self.workers, {m: ModelLoad(m, 0, None) for m in models})


def job(state: str) -> JobRecord:
    values = {f: None for f in VIEW_FIELDS} | {JobField.MODEL: "m", JobField.STATE: state}
    return JobRecord.from_fields("j", [values[f] for f in VIEW_FIELDS])


class FakeJobs:
    """One job, in whatever state the test sets."""

    def __init__(self) -> None:
        self.state = "queued"
        self.reads = 0

    async def get(self, job_id: str) -> JobRecord | None:
        self.reads += 1
        return job(self.state)


@pytest.mark.parametrize(("workers", "backlog", "expected"), [
    ([], 100, 5),  # nothing to estimate from
    ([worker("a", 2, None)], 100, 5),  # no run time measured yet
    ([worker("a", 2, 1.0)], 100, 5),  # 100 jobs x 1 s over 2 slots = 50 s; a tenth of it
    ([worker("a", 1, 0.01)], 10, 1),  # at least 1 s
    ([worker("a", 1, 10.0)], 10_000, 60),  # at most a minute
    ([worker("a", 1, 1.0), worker("b", 1, 3.0, alive=False)], 100, 10),  # only live workers count
])
def test_retry_after_is_a_tenth_of_the_time_to_drain_the_backlog(
    workers: list[WorkerView], backlog: int, expected: int
) -> None:
    assert asyncio.run(retry_after(FakeFleet(workers), "m", backlog)) == expected  # type: ignore[arg-type]


def test_a_long_poll_returns_when_the_job_ends_or_when_its_wait_is_over() -> None:
    async def main() -> None:
        store, waiters = FakeJobs(), CompletionWaiters()
        assert (await wait_for_end(store, waiters, "j", 0.05)).state == "queued"  # type: ignore[arg-type]
        poll = asyncio.create_task(wait_for_end(store, waiters, "j", 30))  # type: ignore[arg-type]
        await asyncio.sleep(0.05)
        store.state = "succeeded"
        waiters.notify("j")
        assert (await asyncio.wait_for(poll, 5)).state == "succeeded"
        assert not waiters._events  # unregistered

    asyncio.run(main())


def test_wait_above_max_wait_s_is_a_validation_error_naming_it() -> None:
    check_wait(60, 60)
    with pytest.raises(RequestValidationError) as err:
        check_wait(61, 60)
    assert err.value.errors()[0]["loc"] == ("query", "wait")


def test_the_submit_body_is_json_whatever_the_content_type_and_errors_name_the_field() -> None:
    assert parse_body(b'{"input": [1], "priority": "high"}').priority == "high"
    with pytest.raises(RequestValidationError) as err:
        parse_body(b'{"input": 1, "priority": "urgent"}')
    assert err.value.errors()[0]["loc"] == ("body", "priority")
