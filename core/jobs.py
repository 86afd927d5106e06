"""The job record: one rq-compatible Redis hash per job, plus Tidal's own fields.

Everything about the record is named here once: its states and the rq status each shows as
(:class:`JobState`), its hash fields (:class:`JobField`), the error an expired job gets, and
its (de)serialisation (:class:`NewJob`, :class:`JobRecord`). The Lua scripts get the state
names and rq statuses as arguments from here, and a test checks that every field they touch
is a :class:`JobField`.

rq reads ``status``, ``origin``, ``data``, ``created_at``, ``enqueued_at`` and ``timeout``,
so ``rq.job.Job.fetch(id, serializer=JSONSerializer)`` loads our jobs. The function name in
``data`` is informational only: the worker never imports anything named by Redis.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final

from core.keys import PRIORITIES, Priority, queue_name


class JobState(StrEnum):
    QUEUED = "queued"  # in its model's queue
    DISPATCHED = "dispatched"  # in one worker's queue, not started
    RUNNING = "running"  # in a worker's active list
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"
    EXPIRED = "expired"  # waited longer than its ttl_s before a worker started it

    @property
    def terminal(self) -> bool:
        return self in TERMINAL

    @property
    def rq_status(self) -> str:
        """rq's ``JobStatus`` value for this state, so rq's tools read our jobs sensibly."""
        return _RQ_STATUS[self]


TERMINAL: Final = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELED, JobState.EXPIRED})

_RQ_STATUS: Final[dict[JobState, str]] = {
    JobState.QUEUED: "queued",
    JobState.DISPATCHED: "queued",
    JobState.RUNNING: "started",
    JobState.SUCCEEDED: "finished",
    JobState.FAILED: "failed",
    JobState.CANCELED: "canceled",
    JobState.EXPIRED: "canceled",
}

EXPIRED_ERROR: Final = "expired: waited longer than its ttl_s before a worker started it"
CANCELED_ERROR: Final = "canceled by request"


class JobField(StrEnum):
    """Every field of the job hash. rq's own first, then Tidal's."""

    STATUS = "status"
    ORIGIN = "origin"
    DATA = "data"
    CREATED_AT = "created_at"
    ENQUEUED_AT = "enqueued_at"
    TIMEOUT = "timeout"
    DESCRIPTION = "description"
    ID = "id"
    MODEL = "model"
    VERSION = "version"
    PRIORITY = "priority"
    SESSION = "session"
    STATE = "state"
    ATTEMPT = "attempt"
    MAX_ATTEMPTS = "max_attempts"
    EXECUTIONS = "executions"
    WORKER = "worker"
    LOST_FROM = "lost_from"
    QUEUED_AT_S = "queued_at_s"
    DISPATCHED_AT_S = "dispatched_at_s"
    STARTED_AT_S = "started_at_s"
    FINISHED_AT_S = "finished_at_s"
    TIMEOUT_S = "timeout_s"
    EXPIRES_AT_S = "expires_at_s"
    OUTPUT = "output"  # JSON text of the handler's result
    ERROR = "error"


# Recorded in rq's ``data`` field so rq can describe the job; never resolved or imported.
FUNC_NAME: Final = "tidal.predict"


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def dumps_value(value: Any) -> str:
    """A job's input or output as stored: compact JSON, and no NaN or infinity (not JSON)."""
    return json.dumps(value, separators=(",", ":"), allow_nan=False)


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

    def expires_at(self, now: float) -> float:
        return now + self.ttl_s

    def fields(self, now: float) -> dict[JobField, str]:
        """The job hash: rq's fields, so rq can load it, then Tidal's."""
        return {
            JobField.STATUS: JobState.QUEUED.rq_status,
            JobField.ORIGIN: queue_name(self.model, self.priority),
            JobField.DATA: f'["{FUNC_NAME}", null, [{self.input_json}], {{}}]',
            JobField.CREATED_AT: _iso(now),
            JobField.ENQUEUED_AT: _iso(now),
            JobField.TIMEOUT: str(self.timeout_s),
            JobField.DESCRIPTION: f"{FUNC_NAME}({self.model})",
            JobField.ID: self.id,
            JobField.MODEL: self.model,
            JobField.VERSION: self.version,
            JobField.PRIORITY: self.priority,
            JobField.SESSION: self.session or "",
            JobField.STATE: JobState.QUEUED,
            JobField.ATTEMPT: "1",
            JobField.MAX_ATTEMPTS: str(self.max_attempts),
            JobField.EXECUTIONS: "0",
            JobField.QUEUED_AT_S: repr(now),
            JobField.TIMEOUT_S: str(self.timeout_s),
            JobField.EXPIRES_AT_S: repr(self.expires_at(now)),
            JobField.WORKER: "",
        }


def input_from_data(data: str) -> Any:
    """The job input from rq's ``data`` field: ``[func, instance, [input], {}]``."""
    return json.loads(data)[2][0]


def _f(v: str | None) -> float | None:
    return float(v) if v else None


# Lookups by stored value, cheaper than JobState(...) and a scan of PRIORITIES on every read.
_STATES: Final[dict[str, JobState]] = {s.value: s for s in JobState}
_PRIORITIES: Final[dict[str, Priority]] = {p: p for p in PRIORITIES}


@dataclass(frozen=True, slots=True)
class JobRecord:
    """A stored job as Tidal reads it. Every attribute but ``id`` is the :class:`JobField` of that name."""

    id: str
    model: str
    version: str
    priority: Priority
    session: str | None
    state: JobState
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
        """From the values of :data:`VIEW_FIELDS`, in that order (an ``HMGET``)."""
        d = dict(zip(VIEW_FIELDS, values, strict=True))
        return cls(
            id=job_id,
            model=d[JobField.MODEL] or "",
            version=d[JobField.VERSION] or "",
            priority=_PRIORITIES.get(d[JobField.PRIORITY] or "", "normal"),
            session=d[JobField.SESSION] or None,
            state=_STATES[d[JobField.STATE] or JobState.QUEUED],
            attempt=int(d[JobField.ATTEMPT] or 1),
            max_attempts=int(d[JobField.MAX_ATTEMPTS] or 1),
            executions=int(d[JobField.EXECUTIONS] or 0),
            worker=d[JobField.WORKER] or None,
            lost_from=d[JobField.LOST_FROM] or None,
            queued_at_s=_f(d[JobField.QUEUED_AT_S]),
            dispatched_at_s=_f(d[JobField.DISPATCHED_AT_S]),
            started_at_s=_f(d[JobField.STARTED_AT_S]),
            finished_at_s=_f(d[JobField.FINISHED_AT_S]),
            timeout_s=int(d[JobField.TIMEOUT_S] or 0),
            expires_at_s=_f(d[JobField.EXPIRES_AT_S]),
            output=d[JobField.OUTPUT],
            error=d[JobField.ERROR],
        )

    @property
    def terminal(self) -> bool:
        return self.state.terminal

    def public(self) -> dict[str, Any]:
        """The job as the API shows it (``api.schemas.Job``)."""
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


# The fields a read fetches: every attribute of JobRecord but its id (a name that is not a
# JobField fails here, at import). ``data`` (the input, up to the body limit) is never read back.
VIEW_FIELDS: Final[tuple[JobField, ...]] = tuple(JobField(f.name) for f in fields(JobRecord) if f.name != "id")
