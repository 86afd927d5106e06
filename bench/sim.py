"""The discrete-event core: a time-ordered event queue."""

from __future__ import annotations

import heapq
import itertools
from typing import Generic, TypeVar

T = TypeVar("T")


class EventQueue(Generic[T]):
    """Events ordered by time; simultaneous ones come out in the order they went in."""

    __slots__ = ("_heap", "_seq")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, T]] = []
        self._seq = itertools.count()

    def push(self, at: float, event: T) -> None:
        heapq.heappush(self._heap, (at, next(self._seq), event))

    def pop(self) -> tuple[float, T]:
        at, _, event = heapq.heappop(self._heap)
        return at, event

    def next_time(self) -> float:
        return self._heap[0][0] if self._heap else float("inf")

    def __len__(self) -> int:
        return len(self._heap)
