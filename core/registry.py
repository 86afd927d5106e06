"""The model registry: each model's settings published to Redis, so a worker needs only ``REDIS_URL``.

Publishers are the operator's own tools, reading ``tidal.toml``: the API at start, ``tidal up``
and ``tidal models push``. A worker started with ``--model m`` and no config file that names
``m`` reads ``m``'s spec from here. Each entry is versioned: its digest is a hash of the spec,
and its revision grows by one whenever a publish changes the digest (publishing the same
settings again changes nothing), so the autoscaler can tell when a broken pool was fixed.

Trust: a spec names a handler to import and a package to install, so whoever may write to this
Redis may run code on the workers. Redis must be reachable only by Tidal's hosts (see
``infra/``: the Redis security group admits workers and API hosts only).

Workers that cannot start (unknown model, a handler that does not import) record why in
:func:`report_boot_error`, so the autoscaler reports the pool as broken without waiting for
its boot timeout.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Final

import redis.asyncio as aioredis
import redis.exceptions
from pydantic import BaseModel, ConfigDict, ValidationError

from core import keys
from core.errors import StoreUnavailable
from core.settings import ModelSettings, Settings, WorkerSettings

# Boot errors are news for a while, then history: the hash expires this long after the last one.
BOOT_ERRORS_TTL_S: Final = 86_400

_PUBLISH = """
if redis.call('HGET', KEYS[2], 'digest') == ARGV[1] then
  return {tonumber(redis.call('HGET', KEYS[2], 'revision')), 0}
end
local rev = redis.call('HINCRBY', KEYS[2], 'revision', 1)
redis.call('HSET', KEYS[2], 'digest', ARGV[1], 'spec', ARGV[2], 'published_at', ARGV[3], 'source', ARGV[4])
redis.call('SADD', KEYS[1], ARGV[5])
return {rev, 1}
"""


class WorkerSpec(BaseModel):
    """Everything a worker of one model needs that would otherwise come from ``tidal.toml``."""

    model_config = ConfigDict(extra="forbid")

    model: ModelSettings
    worker: WorkerSettings
    result_ttl_s: int

    @classmethod
    def from_settings(cls, settings: Settings, name: str) -> WorkerSpec:
        return cls(model=settings.models[name], worker=settings.worker, result_ttl_s=settings.api.result_ttl_s)

    def canonical_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))

    def digest(self) -> str:
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Entry:
    name: str
    spec: WorkerSpec
    digest: str
    revision: int
    published_at: float
    source: str


@dataclass(frozen=True, slots=True)
class Published:
    name: str
    revision: int
    changed: bool


async def _call(coro: Any) -> Any:
    try:
        return await coro
    except redis.exceptions.RedisError as exc:
        raise StoreUnavailable(f"redis: {type(exc).__name__}: {exc}") from exc


async def publish(client: aioredis.Redis, settings: Settings, *, source: str, now: float) -> list[Published]:
    """Publish every model of ``settings``; a model whose spec is unchanged keeps its revision."""
    out = []
    for name in settings.models:
        spec = WorkerSpec.from_settings(settings, name)
        rev, changed = await _call(
            client.eval(
                _PUBLISH, 2, keys.REGISTRY, keys.registry_entry(name),
                spec.digest(), spec.canonical_json(), repr(now), source, name,
            )
        )
        out.append(Published(name, int(rev), bool(changed)))
    return out


def _entry(name: str, h: dict[str, str]) -> Entry | None:
    try:
        spec = WorkerSpec.model_validate_json(h["spec"])
        return Entry(name, spec, h["digest"], int(h["revision"]), float(h["published_at"]), h.get("source", ""))
    except (KeyError, ValueError, ValidationError):
        # Written by another Tidal version, or by hand: as good as not registered.
        return None


async def get(client: aioredis.Redis, name: str) -> Entry | None:
    return _entry(name, await _call(client.hgetall(keys.registry_entry(name))))


async def names(client: aioredis.Redis) -> list[str]:
    return sorted(await _call(client.smembers(keys.REGISTRY)))


async def digests(client: aioredis.Redis, models: list[str]) -> dict[str, str | None]:
    """Each model's published digest, ``None`` where it is not registered."""
    async with client.pipeline(transaction=False) as p:
        for m in models:
            p.hget(keys.registry_entry(m), "digest")
        values = await _call(p.execute())
    return dict(zip(models, values, strict=True))


@dataclass(frozen=True, slots=True)
class BootError:
    error: str
    at: float
    final: bool  # the worker exited for good (EXIT_CONFIG); otherwise it may come up on a restart


async def report_boot_error(
    client: aioredis.Redis, model: str, where: str, error: str, now: float, *, final: bool
) -> None:
    """Record that a worker of ``model`` on ``where`` (instance id or host) could not start."""
    async with client.pipeline(transaction=True) as p:
        p.hset(keys.boot_errors(model), where, json.dumps({"error": error, "at": now, "final": final}))
        p.expire(keys.boot_errors(model), BOOT_ERRORS_TTL_S)
        await _call(p.execute())


async def boot_errors(client: aioredis.Redis, models: list[str]) -> dict[str, dict[str, BootError]]:
    """Per model, ``{where: BootError}`` of workers that could not start."""
    async with client.pipeline(transaction=False) as p:
        for m in models:
            p.hgetall(keys.boot_errors(m))
        rows = await _call(p.execute())
    out: dict[str, dict[str, BootError]] = {}
    for m, row in zip(models, rows, strict=True):
        parsed = {}
        for where, raw in row.items():
            try:
                d = json.loads(raw)
                parsed[where] = BootError(str(d["error"]), float(d["at"]), bool(d.get("final", False)))
            except (ValueError, KeyError, TypeError):
                continue
        out[m] = parsed
    return out
