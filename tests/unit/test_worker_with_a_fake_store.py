"""The worker loop against an in-memory ``WorkerStore``: the narrow interface is all a worker needs.

The real store's scripts are tested against a real server elsewhere; here only the worker's
own sequence is under test (register, take, start, run, finish, drain, deregister, and the
heartbeat's look at the active list).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest

from core.fleet import WorkerRecord, WorkerState
from core.settings import WorkerSettings
from core.store import RequeueMode, WorkerStore
from worker.handlers.echo import Echo
from worker.runtime import Worker, WorkerIdentity


class FakeWorkerStore:
    """One worker's queue in memory, and a log of the calls that changed something."""

    def __init__(self, jobs: dict[str, Any]):
        self.inputs = jobs
        self.queue = list(jobs)
        self.active: list[str] = []
        self.calls: list[tuple[str, ...]] = []
        self.results: dict[str, tuple[bool, str]] = {}
        self.state: WorkerState | None = None

    async def register_worker(self, record: WorkerRecord, ttl_s: float) -> None:
        self.state = WorkerState.READY
        self.calls.append(("register", record.model))

    async def heartbeat(self, worker_id: str, ttl_s: float) -> tuple[WorkerState | None, set[str]]:
        return self.state, set()

    async def set_worker_state(self, worker_id: str, state: WorkerState) -> bool:
        self.state = state
        self.calls.append(("state", state))
        return True

    async def requeue_worker(self, worker_id: str, model: str, mode: RequeueMode, now: float) -> tuple[int, int]:
        returned, self.queue = len(self.queue), []
        self.calls.append(("requeue", mode))
        return returned, 0

    async def deregister_worker(self, worker_id: str, model: str, now: float) -> tuple[int, int]:
        self.calls.append(("deregister",))
        return 0, 0

    async def take(self, worker_id: str, timeout_s: float) -> str | None:
        if self.queue:
            self.active.append(self.queue[0])
            return self.queue.pop(0)
        await asyncio.sleep(min(timeout_s, 0.01))
        return None

    async def active_jobs(self, worker_id: str) -> list[str]:
        return list(self.active)

    async def start_job(self, worker_id: str, job_id: str, now: float) -> tuple[Any, int, int] | None:
        self.calls.append(("start", job_id))
        return self.inputs[job_id], 30, 1

    async def finish_job(self, *, worker_id: str, model: str, job_id: str, attempt: int, ok: bool, payload: str,
                         run_s: float, now: float) -> bool:
        self.calls.append(("finish", job_id))
        self.active.remove(job_id)
        self.results[job_id] = (ok, payload)
        return True


def test_a_worker_runs_its_jobs_and_drains_through_its_narrow_interface() -> None:
    fake = FakeWorkerStore({"j1": {"a": 1}, "j2": [2]})
    store: WorkerStore = fake  # the fake is a WorkerStore: what the worker may use, and nothing more

    async def main() -> None:
        worker = Worker(store, WorkerIdentity.new("m", "1", 1.0, 1, ""), Echo(),
                        WorkerSettings(heartbeat_interval_s=0.05, heartbeat_ttl_s=1.0))
        run = asyncio.create_task(worker.run())
        while len(fake.results) < 2:
            await asyncio.sleep(0.01)
        await worker.drain()
        await asyncio.wait_for(run, 5)

    asyncio.run(main())
    assert fake.results == {"j1": (True, '{"a":1}'), "j2": (True, "[2]")}
    assert fake.calls == [("register", "m"), ("start", "j1"), ("finish", "j1"), ("start", "j2"), ("finish", "j2"),
                          ("state", WorkerState.DRAINING), ("requeue", "drain"), ("deregister",)]


class SwallowsCancel(FakeWorkerStore):
    """A heartbeat that, like a redis-py call a cancellation hits at the wrong moment, returns as if
    nothing happened (seen on a real server: 2 in 40 SIGTERMs left a worker beating forever)."""

    async def heartbeat(self, worker_id: str, ttl_s: float) -> tuple[WorkerState | None, set[str]]:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(30)
        return self.state, set()


@pytest.mark.timeout(20)  # before the fix the heartbeat went on forever and so did the worker
def test_a_worker_stops_even_when_a_store_call_swallows_the_cancel_of_its_heartbeat() -> None:
    fake = SwallowsCancel({"j1": 1})

    async def main() -> None:
        worker = Worker(fake, WorkerIdentity.new("m", "1", 1.0, 1, ""), Echo(),
                        WorkerSettings(heartbeat_interval_s=0.05, heartbeat_ttl_s=1.0))
        run = asyncio.create_task(worker.run())
        while not fake.results:
            await asyncio.sleep(0.01)
        await worker.drain()
        await asyncio.wait_for(run, 5)

    asyncio.run(main())
    assert fake.calls[-1] == ("deregister",)
