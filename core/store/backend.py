"""What every record's calls share: the client, the registered scripts and the retention."""

from __future__ import annotations

from importlib import resources
from typing import Any

import redis.asyncio as aioredis

SCRIPTS = ("submit", "dispatch", "start", "finish", "finalize", "requeue")


def _script(name: str) -> str:
    return resources.files("core").joinpath("lua", f"{name}.lua").read_text()


class Backend:
    def __init__(self, client: aioredis.Redis, *, result_ttl_s: int = 1800):
        # Any: redis-py's stubs type every reply as bytes | str whatever decode_responses says.
        self.client: Any = client
        self.result_ttl_s = result_ttl_s
        self._scripts = {n: client.register_script(_script(n)) for n in SCRIPTS}

    async def _run(self, name: str, keys_: list[str], args: list[Any]) -> Any:
        return await self._scripts[name](keys=keys_, args=args)
