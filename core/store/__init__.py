"""All of Tidal's Redis I/O: one package, one module per record, one error map.

Every state change of a job is one Lua script (``core/lua``), so a job is always in exactly
one list and no process dying between two calls can lose it. Redis errors leave the store as
``StoreUnavailable`` (``errors.py``); no other package imports ``redis``.
"""

from __future__ import annotations

from core.store.autoscaler_state import AutoscalerRecords, Lease
from core.store.connection import connect
from core.store.dispatch import Dispatch
from core.store.errors import store_call
from core.store.events import Batch, Events, EventStream
from core.store.fleet import Fleet
from core.store.jobs import CancelOutcome, Jobs, Submitted
from core.store.registry import Registry
from core.store.roles import (
    ApiStore,
    AutoscalerStore,
    DispatcherStore,
    LeaseStore,
    PublishesModels,
    RegistryStore,
    WorkerBootStore,
    WorkerStore,
)
from core.store.workers import RequeueMode, Workers

__all__ = [
    "ApiStore", "AutoscalerStore", "Batch", "CancelOutcome", "DispatcherStore", "EventStream", "Lease", "LeaseStore",
    "PublishesModels", "RegistryStore", "RequeueMode", "Store", "Submitted", "WorkerBootStore", "WorkerStore",
    "connect",
]


class Store(Jobs, Dispatch, Workers, Fleet, Events, AutoscalerRecords, Registry):
    """Every record's calls on one client. Each role is handed it typed as the narrow part it uses."""

    @classmethod
    def from_url(cls, url: str, *, result_ttl_s: int = 1800) -> Store:
        return cls(connect(url), result_ttl_s=result_ttl_s)

    async def close(self) -> None:
        await self.client.aclose()

    @store_call(retry=True)
    async def ping(self) -> bool:
        return bool(await self.client.ping())
