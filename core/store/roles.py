"""What each role may ask of the store: one narrow interface per role.

A role is handed the ``Store`` typed as its own interface, so it sees only the calls it needs
(mypy checks that the ``Store`` offers them where each role's ``main`` builds it), and a test
can hand it a fake that implements just these few calls.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from core.fleet import FleetSnapshot, ScaleRecord, WorkerRecord, WorkerState
from core.jobs import JobRecord, NewJob
from core.registry import BootError, Entry, Published, WorkerSpec
from core.store.autoscaler_state import Lease
from core.store.events import EventStream
from core.store.jobs import CancelOutcome, Submitted
from core.store.workers import RequeueMode


class ReadsFleet(Protocol):
    async def snapshot(self, models: Iterable[str]) -> FleetSnapshot: ...


class PublishesModels(Protocol):
    async def publish_models(self, specs: Mapping[str, WorkerSpec], *, source: str, now: float
                             ) -> list[Published]: ...


class ReadsRegistry(Protocol):
    async def registry_entry(self, name: str) -> Entry | None: ...

    async def registered_models(self) -> list[str]: ...


class RegistryStore(PublishesModels, ReadsRegistry, Protocol):
    """``tidal models push | list``."""


class WorkerBootStore(ReadsRegistry, Protocol):
    """What a worker needs before it runs: its model's spec, and a place to say why it cannot start."""

    async def report_boot_error(self, model: str, where: str, error: BootError) -> None: ...


class ApiStore(ReadsFleet, PublishesModels, Protocol):
    async def ping(self) -> bool: ...

    async def submit(self, job: NewJob, *, max_queue_len: int, idempotency_key: str | None, now: float
                     ) -> Submitted: ...

    async def get(self, job_id: str) -> JobRecord | None: ...

    async def cancel(self, job_id: str, now: float) -> tuple[CancelOutcome, JobRecord | None]: ...

    async def set_policy(self, model: str, policy: str) -> None: ...

    def done_events(self) -> EventStream: ...


class DispatcherStore(ReadsFleet, Protocol):
    async def peek_session(self, model: str) -> tuple[str, str | None] | None: ...

    async def dispatch(self, model: str, worker_id: str, bound: int, now: float, expected: str = ""
                       ) -> tuple[str, str | None]: ...

    async def requeue_worker(self, worker_id: str, model: str, mode: RequeueMode, now: float) -> tuple[int, int]: ...

    async def expire_due(self, now: float, limit: int = 500) -> int: ...

    def dispatch_events(self) -> EventStream: ...


class WorkerStore(Protocol):
    async def register_worker(self, record: WorkerRecord, ttl_s: float) -> None: ...

    async def heartbeat(self, worker_id: str, ttl_s: float) -> tuple[WorkerState | None, set[str]]: ...

    async def set_worker_state(self, worker_id: str, state: WorkerState) -> bool: ...

    async def requeue_worker(self, worker_id: str, model: str, mode: RequeueMode, now: float) -> tuple[int, int]: ...

    async def deregister_worker(self, worker_id: str, model: str, now: float) -> tuple[int, int]: ...

    async def take(self, worker_id: str, timeout_s: float) -> str | None: ...

    async def active_jobs(self, worker_id: str) -> list[str]: ...

    async def start_job(self, worker_id: str, job_id: str, now: float) -> tuple[Any, int, int] | None: ...

    async def finish_job(self, *, worker_id: str, model: str, job_id: str, attempt: int, ok: bool, payload: str,
                         run_s: float, now: float) -> bool: ...


class LeaseStore(Protocol):
    async def take_lease(self, ttl_s: float) -> Lease | None: ...

    async def renew_lease(self, lease: Lease) -> bool: ...

    async def release_lease(self, lease: Lease) -> None: ...

    async def load_autoscaler_state(self) -> str | None: ...

    async def save_autoscaler_state(self, lease: Lease, text: str) -> bool: ...


class AutoscalerStore(ReadsFleet, LeaseStore, Protocol):
    async def set_worker_state(self, worker_id: str, state: WorkerState) -> bool: ...

    async def wake_dispatchers(self, model: str) -> None: ...

    async def record_scale(self, model: str, record: ScaleRecord) -> None: ...

    async def model_digests(self, models: Iterable[str]) -> dict[str, str | None]: ...

    async def boot_errors(self, models: Iterable[str]) -> dict[str, dict[str, BootError]]: ...
