"""Request and response bodies."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from core.jobs import JobState
from core.keys import Priority
from core.settings import PolicyName


class SubmitRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input: JsonValue = Field(description="passed to the model handler's predict()")
    priority: Priority = "normal"
    session: str | None = Field(default=None, min_length=1, max_length=256,
                                description="affinity key for the hash policy")
    timeout_s: int | None = Field(default=None, gt=0, le=7 * 86_400, description="execution timeout")
    ttl_s: int | None = Field(default=None, gt=0, le=7 * 86_400,
                              description="how long the job may wait before a worker starts it")


class Links(BaseModel):
    self: str
    cancel: str
    wait: str


class Accepted(BaseModel):
    id: str
    model: str
    status: str
    created_at: str
    links: Links


class Job(BaseModel):
    id: str
    model: str
    version: str
    status: JobState
    priority: Priority
    session: str | None
    worker: str | None
    attempt: int
    result: Any = None
    error: str | None
    queued_at: str | None
    dispatched_at: str | None
    started_at: str | None
    finished_at: str | None
    queue_s: float | None
    run_s: float | None


class PolicyChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    policy: PolicyName


class ModelStatus(BaseModel):
    name: str
    version: str
    policy: str
    backlog: int
    in_flight: int
    workers: int
    workers_draining: int
    workers_desired: int | None
    scale_reason: str | None
    broken: str | None = Field(
        default=None, description="why the autoscaler stopped launching this model's instances, if it did"
    )
    max_queue_len: int
