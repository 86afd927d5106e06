"""The autoscaler's lock and its saved state in Redis.

Only the holder of the lock acts, so overlapping cron runs (or a cron run next to a
long-running loop) never launch or stop the same capacity twice. The state is written only
while the lock is still ours: a tick that outlived its lock must not overwrite the state of
the run that took the lock over.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions

from autoscaler.state import AutoscalerState, from_json, to_json
from core import keys
from core.errors import StoreUnavailable

log = logging.getLogger("tidal.autoscaler")

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_SAVE_IF_HELD = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[2])
return 1
"""


async def _call(coro: Any) -> Any:
    try:
        return await coro
    except redis.exceptions.RedisError as exc:
        raise StoreUnavailable(f"redis: {type(exc).__name__}: {exc}") from exc


async def acquire(client: aioredis.Redis, ttl_s: float) -> str | None:
    """The lock's token if we took it, ``None`` if another run holds it."""
    token = secrets.token_hex(8)
    taken = await _call(client.set(keys.AUTOSCALER_LOCK, token, nx=True, px=int(ttl_s * 1000)))
    return token if taken else None


async def release(client: aioredis.Redis, token: str) -> None:
    await _call(client.eval(_RELEASE, 1, keys.AUTOSCALER_LOCK, token))


async def load(client: aioredis.Redis) -> AutoscalerState:
    text = await _call(client.get(keys.AUTOSCALER_STATE))
    if text is None:
        return AutoscalerState.fresh()
    try:
        return from_json(text)
    except ValueError as exc:
        log.error("saved autoscaler state unreadable, starting afresh: %s", exc)
        return AutoscalerState.fresh()


async def save(client: aioredis.Redis, token: str, state: AutoscalerState) -> bool:
    """Write ``state`` if ``token`` still holds the lock; false if the lock was lost."""
    saved = await _call(
        client.eval(_SAVE_IF_HELD, 2, keys.AUTOSCALER_LOCK, keys.AUTOSCALER_STATE, token, to_json(state))
    )
    return bool(saved)
