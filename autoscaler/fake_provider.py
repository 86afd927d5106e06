"""An in-memory provider for tests that behaves like a cloud one: idempotent launch tokens,
instances that show up in listings only after a lag, and injectable errors."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Literal

from autoscaler.provider import Instance
from core.errors import CapacityError, ProviderError

Operation = Literal["list", "launch", "terminate"]


class FakeProvider:
    name = "fake"

    def __init__(
        self,
        clock: Callable[[], float],
        *,
        list_lag_s: float = 0.0,
        capacity: int | None = None,
        instance_type: str = "fake.small",
        per_instance: int = 1,
    ) -> None:
        """``list_lag_s``: how long a launched instance stays missing from ``list_instances``.

        ``capacity``: most instances alive at once; a launch beyond it raises ``CapacityError``.
        ``per_instance``: workers (GPUs) each instance runs.
        """
        self.clock = clock
        self.list_lag_s = list_lag_s
        self.capacity = capacity
        self.instance_type = instance_type
        self.per_instance = per_instance
        self.instances: dict[str, Instance] = {}
        self.by_token: dict[str, list[str]] = {}
        self.launch_calls: list[tuple[str, int, str]] = []
        self.terminate_calls: list[list[str]] = []
        # Errors the next calls of each operation raise, one per call.
        self.failures: dict[Operation, list[ProviderError]] = {"list": [], "launch": [], "terminate": []}
        self._ids = itertools.count(1)

    def _maybe_fail(self, op: Operation) -> None:
        if self.failures[op]:
            raise self.failures[op].pop(0)

    def alive(self, pool: str | None = None) -> list[Instance]:
        """Every instance not terminated, listed or not yet (what a test asserts against)."""
        return [
            i for i in self.instances.values() if i.state != "terminated" and (pool is None or i.pool == pool)
        ]

    def list_instances(self, pool: str | None = None) -> list[Instance]:
        self._maybe_fail("list")
        now = self.clock()
        return [i for i in self.alive(pool) if now - i.launched_at >= self.list_lag_s]

    def launch(self, pool: str, workers: int, token: str) -> list[Instance]:
        self.launch_calls.append((pool, workers, token))
        count = -(-workers // self.per_instance)
        if token in self.by_token:
            return [self.instances[i] for i in self.by_token[token]]
        self._maybe_fail("launch")
        if self.capacity is not None and len(self.alive()) + count > self.capacity:
            raise CapacityError(
                f"no capacity for {count} more {self.instance_type}",
                instance_type=self.instance_type,
                subnet="fake-subnet",
            )
        now = self.clock()
        started = [
            Instance(f"i-{next(self._ids):04d}", pool, "running", now, self.instance_type, "fake-subnet",
                     self.per_instance)
            for _ in range(count)
        ]
        for inst in started:
            self.instances[inst.id] = inst
        self.by_token[token] = [i.id for i in started]
        return started

    def terminate(self, instance_ids: Sequence[str]) -> None:
        self.terminate_calls.append(list(instance_ids))
        self._maybe_fail("terminate")
        for iid in instance_ids:
            if iid in self.instances:
                self.instances[iid] = replace(self.instances[iid], state="terminated")
