"""The job record: one rq-compatible Redis hash per job, plus Tidal's own fields.

rq reads ``status``, ``origin``, ``data``, ``created_at``, ``enqueued_at`` and ``timeout``,
so ``rq.job.Job.fetch(id, serializer=JSONSerializer)`` loads our jobs. The function name in
``data`` is informational only: the worker never imports anything named by Redis.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal

from core.keys import Priority, queue_name

JobState = Literal["queued", "dispatched", "running", "succeeded", "failed", "canceled", "expired"]
TERMINAL: Final[frozenset[str]] = frozenset({"succeeded", "failed", "canceled", "expired"})

# rq's JobStatus values for each of ours, so rq's tools read our jobs sensibly.
RQ_STATUS: Final[dict[str, str]] = {
    "queued": "queued",
    "dispatched": "queued",
    "running": "started",
    "succeeded": "finished",
    "failed": "failed",
    "canceled": "canceled",
    "expired": "canceled",
}

# Recorded in rq's ``data`` field so rq can describe the job; never resolved or imported.
FUNC_NAME: Final = "tidal.predict"

# Fields the API reads; ``data`` (the input, up to the body limit) is fetched only on demand.
VIEW_FIELDS: Final[tuple[str, ...]] = (
    "model", "version", "priority", "session", "state", "attempt", "max_attempts", "worker",
    "queued_at_s", "dispatched_at_s", "started_at_s", "finished_at_s", "output", "error",
    "timeout_s", "expires_at_s", "executions", "lost_from",
)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True, slots=True)
class NewJob:
    """A job as submitted, before it is stored."""

    id: str
    model: str
    version: str
    input_json: str
    priority: Priority = "normal"
    session: str | None = None
    timeout_s: int = 300
    ttl_s: int = 86_400
    max_attempts: int = 3

    def fields(self, now: float) -> dict[str, str]:
        """The job hash: rq's fields, so rq can load it, then Tidal's."""
        return {
            "status": "queued",
            "origin": queue_name(self.model, self.priority),
            "data": f'["{FUNC_NAME}", null, [{self.input_json}], {{}}]',
            "created_at": _iso(now),
            "enqueued_at": _iso(now),
            "timeout": str(self.timeout_s),
            "description": f"{FUNC_NAME}({self.model})",
            "id": self.id,
            "model": self.model,
            "version": self.version,
            "priority": self.priority,
            "session": self.session or "",
            "state": "queued",
            "attempt": "1",
            "max_attempts": str(self.max_attempts),
            "executions": "0",
            "queued_at_s": repr(now),
            "timeout_s": str(self.timeout_s),
            "expires_at_s": repr(now + self.ttl_s),
            "worker": "",
        }


def input_from_data(data: str) -> Any:
    """The job input from rq's ``data`` field: ``[func, instance, [input], {}]``."""
    return json.loads(data)[2][0]


def _f(v: str | None) -> float | None:
    return float(v) if v else None


@dataclass(frozen=True, slots=True)
class JobRecord:
    id: str
    model: str
    version: str
    priority: str
    session: str | None
    state: str
    attempt: int
    max_attempts: int
    executions: int
    worker: str | None
    lost_from: str | None
    queued_at_s: float | None
    dispatched_at_s: float | None
    started_at_s: float | None
    finished_at_s: float | None
    timeout_s: int
    expires_at_s: float | None
    output: str | None  # JSON text
    error: str | None

    @classmethod
    def from_fields(cls, job_id: str, values: list[str | None]) -> JobRecord:
        d = dict(zip(VIEW_FIELDS, values, strict=True))
        return cls(
            id=job_id,
            model=d["model"] or "",
            version=d["version"] or "",
            priority=d["priority"] or "normal",
            session=d["session"] or None,
            state=d["state"] or "queued",
            attempt=int(d["attempt"] or 1),
            max_attempts=int(d["max_attempts"] or 1),
            executions=int(d["executions"] or 0),
            worker=d["worker"] or None,
            lost_from=d["lost_from"] or None,
            queued_at_s=_f(d["queued_at_s"]),
            dispatched_at_s=_f(d["dispatched_at_s"]),
            started_at_s=_f(d["started_at_s"]),
            finished_at_s=_f(d["finished_at_s"]),
            timeout_s=int(d["timeout_s"] or 0),
            expires_at_s=_f(d["expires_at_s"]),
            output=d["output"],
            error=d["error"],
        )

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL

    def public(self) -> dict[str, Any]:
        """The job as the API shows it."""
        queue_s = run_s = None
        if self.queued_at_s is not None and self.started_at_s is not None:
            queue_s = round(self.started_at_s - self.queued_at_s, 6)
        if self.started_at_s is not None and self.finished_at_s is not None:
            run_s = round(self.finished_at_s - self.started_at_s, 6)
        return {
            "id": self.id,
            "model": self.model,
            "version": self.version,
            "status": self.state,
            "priority": self.priority,
            "session": self.session,
            "worker": self.worker,
            "attempt": self.attempt,
            "result": json.loads(self.output) if self.output is not None else None,
            "error": self.error,
            "queued_at": _iso(self.queued_at_s) if self.queued_at_s else None,
            "dispatched_at": _iso(self.dispatched_at_s) if self.dispatched_at_s else None,
            "started_at": _iso(self.started_at_s) if self.started_at_s else None,
            "finished_at": _iso(self.finished_at_s) if self.finished_at_s else None,
            "queue_s": queue_s,
            "run_s": run_s,
        }
