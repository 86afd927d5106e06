"""A Redis client from a URL. Nothing connects until the first call."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff


def connect(url: str, **kwargs: Any) -> aioredis.Redis:
    """A client for ``redis://``, ``rediss://`` (TLS) or ``unix://`` URLs, with user/password if given.

    redis-py's own retries are off: whether a call may be sent twice is the store's decision
    (``core.store.errors``), since some scripts must not run twice.
    """
    return aioredis.from_url(url, decode_responses=True, health_check_interval=30, retry=Retry(NoBackoff(), 0),
                             **kwargs)
