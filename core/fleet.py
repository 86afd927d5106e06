"""What the fleet looks like in Redis: registered workers and each model's load."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class WorkerView:
    id: str
    model: str
    version: str
    weight: float
    slots: int
    host: str
    pid: int
    instance_id: str
    state: str  # ready | draining
    alive: bool
    queued: int  # dispatched to it, not started
    running: int
    started_at: float
    last_job_at: float | None
    ewma_run_s: float | None
    jobs_done: int
    gpu: str = ""  # the GPU it is pinned to (CUDA_VISIBLE_DEVICES); empty when not pinned

    @property
    def outstanding(self) -> int:
        return self.queued + self.running

    @classmethod
    def from_hash(cls, h: dict[str, str], alive: bool, queued: int, running: int) -> WorkerView:
        return cls(
            id=h["id"],
            model=h.get("model", ""),
            version=h.get("version", ""),
            weight=float(h.get("weight") or 1.0),
            slots=int(h.get("slots") or 1),
            host=h.get("host", ""),
            pid=int(h.get("pid") or 0),
            instance_id=h.get("instance_id", ""),
            state=h.get("state", "ready"),
            alive=alive,
            queued=queued,
            running=running,
            started_at=float(h.get("started_at") or 0.0),
            last_job_at=float(h["last_job_at"]) if h.get("last_job_at") else None,
            ewma_run_s=float(h["ewma_run_s"]) if h.get("ewma_run_s") else None,
            jobs_done=int(h.get("jobs_done") or 0),
            gpu=h.get("gpu", ""),
        )

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id, "model": self.model, "version": self.version, "weight": self.weight,
            "slots": self.slots, "host": self.host, "pid": self.pid, "instance_id": self.instance_id or None,
            "gpu": self.gpu or None,
            "state": self.state if self.alive else "lost", "queued": self.queued, "running": self.running,
            "ewma_run_s": self.ewma_run_s, "jobs_done": self.jobs_done,
        }


@dataclass(frozen=True, slots=True)
class ModelLoad:
    model: str
    backlog: int  # waiting in the model's queues
    policy_override: str | None
    scale: dict[str, str] = field(default_factory=dict)  # the autoscaler's last decision


@dataclass(frozen=True, slots=True)
class FleetSnapshot:
    workers: list[WorkerView]
    models: dict[str, ModelLoad]

    def workers_of(self, model: str) -> list[WorkerView]:
        return [w for w in self.workers if w.model == model]

    def in_flight(self, model: str) -> int:
        return sum(w.outstanding for w in self.workers_of(model))
