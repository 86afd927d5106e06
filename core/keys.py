"""Every Redis key and channel name Tidal uses, in one place.

Model and worker queues use rq's naming (``rq:queue:<name>``, ``rq:job:<id>``, the
``rq:queues`` set) so that ``rq info`` shows them; everything else is under ``tidal:``.
"""

from __future__ import annotations

from typing import Final, Literal

Priority = Literal["high", "normal", "low"]
PRIORITIES: Final[tuple[Priority, ...]] = ("high", "normal", "low")

RQ_QUEUE_PREFIX: Final = "rq:queue:"
RQ_JOB_PREFIX: Final = "rq:job:"
RQ_QUEUES: Final = "rq:queues"

_PRIORITY_SUFFIX: Final[dict[Priority, str]] = {"high": ".high", "normal": "", "low": ".low"}

WORKERS: Final = "tidal:workers"
EXPIRY: Final = "tidal:expiry"

# Pub/sub channels. Dispatch payloads are ``job:<model>`` (backlog grew), ``free:<model>:<worker>``
# (a job ended on that worker) or ``room:<model>`` (workers came, went or changed state, jobs
# came back, the policy changed: re-read the fleet); done payloads are job ids.
CH_DISPATCH: Final = "tidal:ev:dispatch"
CH_DONE: Final = "tidal:ev:done"
EV_JOB: Final = "job"
EV_FREE: Final = "free"
EV_ROOM: Final = "room"


def dispatch_event(kind: str, model: str, worker_id: str = "") -> str:
    return f"{kind}:{model}:{worker_id}" if worker_id else f"{kind}:{model}"


def parse_dispatch_event(payload: str) -> tuple[str, str, str]:
    """(kind, model, worker id or "")."""
    kind, _, rest = payload.partition(":")
    model, _, worker_id = rest.partition(":")
    return kind, model, worker_id

AUTOSCALER_LOCK: Final = "tidal:autoscaler:lock"
AUTOSCALER_STATE: Final = "tidal:autoscaler:state"

# The model registry: the set of published model names, and one hash per model (its spec as
# JSON, the spec's digest, a revision that grows when the digest changes, when and by what).
REGISTRY: Final = "tidal:registry"


def queue_name(model: str, priority: Priority = "normal") -> str:
    """rq queue name of a model's queue at one priority (``echo``, ``echo.high``)."""
    return model + _PRIORITY_SUFFIX[priority]


def model_queue(model: str, priority: Priority = "normal") -> str:
    return RQ_QUEUE_PREFIX + queue_name(model, priority)


def model_queues(model: str) -> list[str]:
    """The model's queues in the order the dispatcher drains them: high, normal, low."""
    return [model_queue(model, p) for p in PRIORITIES]


def job(job_id: str) -> str:
    return RQ_JOB_PREFIX + job_id


def worker_queue_name(worker_id: str) -> str:
    return "w." + worker_id


def worker_queue(worker_id: str) -> str:
    """Jobs dispatched to one worker and not yet started: the worker's only rq queue."""
    return RQ_QUEUE_PREFIX + worker_queue_name(worker_id)


def worker_active(worker_id: str) -> str:
    """Jobs a worker has taken (BLMOVE target) and not yet finished."""
    return f"tidal:worker:{worker_id}:active"


def worker_info(worker_id: str) -> str:
    return f"tidal:worker:{worker_id}"


def worker_alive(worker_id: str) -> str:
    """Heartbeat key; it expires when the worker stops sending heartbeats."""
    return f"tidal:worker:{worker_id}:alive"


def worker_cancels(worker_id: str) -> str:
    """Ids of running jobs the worker must stop."""
    return f"tidal:worker:{worker_id}:cancel"


def model_policy(model: str) -> str:
    """Run-time override of the model's dispatch policy (``PUT /v1/models/{m}/policy``)."""
    return f"tidal:model:{model}:policy"


def model_scale(model: str) -> str:
    """The autoscaler's last decision for a model (desired, current, reason)."""
    return f"tidal:model:{model}:scale"


def model_counters(model: str) -> str:
    """Running totals of a model's accepted jobs (``arrivals``) and of the runs workers finished
    (``completions``, ``run_s``): the autoscaler takes differences between its ticks."""
    return f"tidal:model:{model}:counters"


def idempotency(model: str, key: str) -> str:
    return f"tidal:idem:{model}:{key}"


def registry_entry(model: str) -> str:
    """The model's published spec (``tidal models push``, the API at start, ``tidal up``)."""
    return f"tidal:registry:{model}"


def boot_errors(model: str) -> str:
    """Why workers of a model could not start, by instance id (or host): a hash of JSON records."""
    return f"tidal:model:{model}:boot-errors"
