"""The job a handler is running, for handlers that want to stop early when asked."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

_local = threading.local()


@dataclass
class JobContext:
    job_id: str
    attempt: int
    timeout_s: int
    stop: threading.Event = field(default_factory=threading.Event)


def current_job() -> JobContext | None:
    """The job running on this thread, inside ``predict``; None elsewhere."""
    return getattr(_local, "job", None)


def run_with(ctx: JobContext, fn, *args):  # type: ignore[no-untyped-def]
    _local.job = ctx
    try:
        return fn(*args)
    finally:
        _local.job = None
