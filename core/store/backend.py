"""What every record's calls share: the client, its scripts and how long finished jobs are kept."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

from core.store.scripts import Scripts


class Backend:
    def __init__(self, client: aioredis.Redis, *, result_ttl_s: int = 1800):
        # Any: redis-py's stubs type every reply as bytes | str whatever decode_responses says.
        self.client: Any = client
        self.result_ttl_s = result_ttl_s
        self.scripts = Scripts(client)
