"""One typed Python call per Lua script: each KEYS slot and ARGV position is named once, here.

A script's keys and arguments are two frozen dataclasses; their fields, in order, are the
script's ``KEYS`` and ``ARGV``. The Lua files never index ``KEYS`` or ``ARGV``: the source sent
to Redis starts with a prelude generated from the dataclasses (``local job = KEYS[1]`` …),
then ``lua/lib.lua`` (what several scripts share), then the script's body, which uses the names.
A test checks that every body uses each declared name and no undeclared one.

Constant arguments (state names, rq statuses, the expiry error) are fields with
:func:`const` defaults taken from ``core.jobs`` and ``core.fleet``: the scripts get them from
Python's one definition, and a call cannot pass another value.
"""

from __future__ import annotations

import dataclasses
import operator
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Generic, TypeVar

from core.fleet import WorkerState
from core.jobs import EXPIRED_ERROR, JobField, JobState

K = TypeVar("K")
A = TypeVar("A")


def const(value: str) -> Any:
    """An argument every call sends with this value; a call cannot set it."""
    return field(default=str(value), init=False)


def rest() -> Any:
    """The last argument: a sequence of strings spread over the remaining ARGV (a Lua table)."""
    return field(metadata={"rest": True})


def _lua(name: str) -> str:
    return resources.files("core").joinpath("lua", f"{name}.lua").read_text()


def _encode(value: object) -> str:
    kind = type(value)  # exact types first: this runs for every argument of every call
    if kind is str:
        return value  # type: ignore[return-value]
    if kind is float:
        return repr(value)  # exact: a timestamp read back must equal the one written
    if kind is int or isinstance(value, str):  # an int (not a bool), or a StrEnum member
        return str(value)
    raise TypeError(f"a script argument must be str, int or float, not {kind.__name__}")


class Script(Generic[K, A]):
    """A Lua script with its keys (dataclass ``K``) and arguments (dataclass ``A``)."""

    def __init__(self, name: str, keys: type[K], args: type[A]):
        self.name = name
        self.keys_type, self.args_type = keys, args
        self.key_names = tuple(f.name for f in dataclasses.fields(keys))  # type: ignore[arg-type]
        arg_fields = dataclasses.fields(args)  # type: ignore[arg-type]
        self.arg_names = tuple(f.name for f in arg_fields)
        # Read in C, in declaration order (attrgetter of one name returns the value, not a tuple).
        self._keys = operator.attrgetter(*self.key_names, *self.key_names[:1])
        self._args = operator.attrgetter(*self.arg_names, *self.arg_names[:1])
        self.rest = bool(arg_fields) and bool(arg_fields[-1].metadata.get("rest"))
        if any(f.metadata.get("rest") for f in arg_fields[:-1]):
            raise TypeError(f"{name}: only the last argument may be rest()")
        if clash := set(self.key_names) & set(self.arg_names):
            raise TypeError(f"{name}: {sorted(clash)} named both as a key and as an argument")
        self.body = _lua(name)
        self.source = "\n".join((self.prelude(), _lua("lib"), self.body))

    def prelude(self) -> str:
        lines = [f"-- {self.name}: KEYS and ARGV by name, generated from core/store/scripts.py"]
        lines += [f"local {n} = KEYS[{i}]" for i, n in enumerate(self.key_names, 1)]
        for i, n in enumerate(self.arg_names, 1):
            last = i == len(self.arg_names)
            lines.append(f"local {n} = {{unpack(ARGV, {i})}}" if last and self.rest else f"local {n} = ARGV[{i}]")
        return "\n".join(lines)

    def keys_of(self, keys: K) -> list[str]:
        if type(keys) is not self.keys_type:
            raise TypeError(f"{self.name} takes {self.keys_type.__name__}, not {type(keys).__name__}")
        return list(self._keys(keys)[:-1])

    def args_of(self, args: A) -> list[str]:
        if type(args) is not self.args_type:
            raise TypeError(f"{self.name} takes {self.args_type.__name__}, not {type(args).__name__}")
        values = list(self._args(args)[:-1])
        tail = list(values.pop()) if self.rest else []  # strings already: a rest() is tuple[str, ...]
        # Most arguments are str: they skip the call.
        return [v if type(v) is str else _encode(v) for v in values] + tail


class Scripts:
    """The scripts registered on one client (EVALSHA, loaded again by redis-py if Redis lost them)."""

    def __init__(self, client: Any):
        self._client = client
        self._registered: dict[str, Any] = {}

    async def __call__(self, script: Script[K, A], keys: K, args: A) -> Any:
        registered = self._registered.get(script.name)
        if registered is None:
            registered = self._registered[script.name] = self._client.register_script(script.source)
        return await registered(keys=script.keys_of(keys), args=script.args_of(args))


# --- jobs -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SubmitKeys:
    job: str
    queue: str  # the model's queue at the job's priority
    rq_queues: str
    high: str
    normal: str
    low: str
    idempotency: str  # the job key when there is none
    expiry: str
    counters: str  # the model's running totals (core.keys.model_counters)


@dataclass(frozen=True, slots=True)
class SubmitArgs:
    job_id: str
    max_queue_len: int
    idempotency_ttl_s: int  # 0: no idempotency key
    expires_at_s: float
    dispatch_channel: str
    event: str
    fields: tuple[str, ...] = rest()  # the job hash, field/value pairs


SUBMIT = Script("submit", SubmitKeys, SubmitArgs)


@dataclass(frozen=True, slots=True)
class FinalizeKeys:
    job: str
    holder: str  # the list the job waits in, or the job key: none
    expiry: str
    cancels: str  # the running worker's cancel set, or the job key: none


@dataclass(frozen=True, slots=True)
class FinalizeArgs:
    job_id: str
    expected_state: str
    expected_worker: str
    state: JobState
    status: str
    reason: str  # the job's error; '' for none
    now: float
    retention_s: int
    done_channel: str


FINALIZE = Script("finalize", FinalizeKeys, FinalizeArgs)

# --- dispatch ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DispatchKeys:
    high: str
    normal: str
    low: str
    worker_queue: str
    worker_active: str
    worker_info: str
    worker_alive: str
    expiry: str


@dataclass(frozen=True, slots=True)
class DispatchArgs:
    worker_id: str
    bound: int
    now: float
    expected: str  # the job id the caller chose for ('' = any)
    job_prefix: str
    retention_s: int
    done_channel: str
    ready: str = const(WorkerState.READY)
    queued: str = const(JobState.QUEUED)
    dispatched: str = const(JobState.DISPATCHED)
    expired: str = const(JobState.EXPIRED)
    expired_status: str = const(JobState.EXPIRED.rq_status)
    expired_error: str = const(EXPIRED_ERROR)


DISPATCH = Script("dispatch", DispatchKeys, DispatchArgs)

# --- workers ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StartKeys:
    job: str
    worker_active: str


@dataclass(frozen=True, slots=True)
class StartArgs:
    job_id: str
    worker_id: str
    now: float
    retention_s: int
    done_channel: str
    dispatched: str = const(JobState.DISPATCHED)
    running: str = const(JobState.RUNNING)
    running_status: str = const(JobState.RUNNING.rq_status)
    expired: str = const(JobState.EXPIRED)
    expired_status: str = const(JobState.EXPIRED.rq_status)
    expired_error: str = const(EXPIRED_ERROR)


START = Script("start", StartKeys, StartArgs)


@dataclass(frozen=True, slots=True)
class FinishKeys:
    job: str
    worker_active: str
    worker_info: str
    counters: str  # the model's running totals (core.keys.model_counters)


@dataclass(frozen=True, slots=True)
class FinishArgs:
    job_id: str
    worker_id: str
    attempt: int
    state: JobState  # succeeded | failed
    status: str
    field: JobField  # output | error
    payload: str
    now: float
    retention_s: int
    run_s: float
    done_channel: str
    dispatch_channel: str
    event: str
    running: str = const(JobState.RUNNING)


FINISH = Script("finish", FinishKeys, FinishArgs)


@dataclass(frozen=True, slots=True)
class RequeueKeys:
    worker_queue: str
    worker_active: str
    worker_info: str
    worker_alive: str
    workers: str
    high: str
    normal: str
    low: str
    cancels: str
    expiry: str


@dataclass(frozen=True, slots=True)
class RequeueArgs:
    worker_id: str
    job_prefix: str
    now: float
    retention_s: int
    mode: str  # dead | drain | gone
    done_channel: str
    dispatch_channel: str
    event: str
    queued: str = const(JobState.QUEUED)
    queued_status: str = const(JobState.QUEUED.rq_status)
    dispatched: str = const(JobState.DISPATCHED)
    running: str = const(JobState.RUNNING)
    failed: str = const(JobState.FAILED)
    failed_status: str = const(JobState.FAILED.rq_status)


REQUEUE = Script("requeue", RequeueKeys, RequeueArgs)

# --- autoscaler -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LeaseKeys:
    lock: str


@dataclass(frozen=True, slots=True)
class LeaseArgs:
    token: str
    ttl_ms: int


LEASE = Script("lease", LeaseKeys, LeaseArgs)


@dataclass(frozen=True, slots=True)
class ReleaseArgs:
    token: str


RELEASE = Script("release", LeaseKeys, ReleaseArgs)


@dataclass(frozen=True, slots=True)
class SaveStateKeys:
    lock: str
    state: str


@dataclass(frozen=True, slots=True)
class SaveStateArgs:
    token: str
    text: str


SAVE_STATE = Script("save_state", SaveStateKeys, SaveStateArgs)

# --- model registry ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PublishKeys:
    registry: str  # the set of published model names
    entry: str  # the model's entry hash


@dataclass(frozen=True, slots=True)
class PublishArgs:
    digest: str
    spec: str  # canonical JSON
    published_at: float
    source: str
    name: str


PUBLISH = Script("publish", PublishKeys, PublishArgs)

ALL: tuple[Script[Any, Any], ...] = (
    SUBMIT, FINALIZE, DISPATCH, START, FINISH, REQUEUE, LEASE, RELEASE, SAVE_STATE, PUBLISH,
)
