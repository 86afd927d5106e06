"""The model registry: publishing each model's spec, reading it back, and workers' boot errors.

What the records are (specs, entries, boot errors, their fields) is ``core/registry.py``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from core import keys
from core.registry import BOOT_ERRORS_TTL_S, BootError, Entry, Published, RegistryField, WorkerSpec
from core.store.backend import Backend
from core.store.errors import store_call
from core.store.scripts import PUBLISH, PublishArgs, PublishKeys


class Registry(Backend):
    # A publish sent twice leaves the same entry (the script compares digests); the replay then
    # reports "unchanged", which only affects what the publisher prints.
    @store_call(retry=True)
    async def publish_models(self, specs: Mapping[str, WorkerSpec], *, source: str, now: float) -> list[Published]:
        """Publish each spec; a model whose spec is unchanged keeps its revision."""
        out = []
        for name, spec in specs.items():
            revision, changed = await self.scripts(
                PUBLISH, PublishKeys(registry=keys.REGISTRY, entry=keys.registry_entry(name)),
                PublishArgs(digest=spec.digest(), spec=spec.canonical_json(), published_at=now, source=source,
                            name=name),
            )
            out.append(Published(name, int(revision), bool(changed)))
        return out

    @store_call(retry=True)
    async def registry_entry(self, name: str) -> Entry | None:
        """The model's entry; ``None`` when it is not registered or unreadable."""
        return Entry.from_hash(name, await self.client.hgetall(keys.registry_entry(name)))

    @store_call(retry=True)
    async def registered_models(self) -> list[str]:
        return sorted(await self.client.smembers(keys.REGISTRY))

    @store_call(retry=True)
    async def model_digests(self, models: Iterable[str]) -> dict[str, str | None]:
        """Each model's published digest, ``None`` where it is not registered."""
        models = list(models)
        async with self.client.pipeline(transaction=False) as p:
            for m in models:
                p.hget(keys.registry_entry(m), RegistryField.DIGEST)
            values = await p.execute()
        return dict(zip(models, values, strict=True))

    @store_call(retry=True)
    async def report_boot_error(self, model: str, where: str, error: BootError) -> None:
        """Record that a worker of ``model`` on ``where`` (instance id or host) could not start."""
        async with self.client.pipeline(transaction=True) as p:
            p.hset(keys.boot_errors(model), where, error.to_json())
            p.expire(keys.boot_errors(model), BOOT_ERRORS_TTL_S)
            await p.execute()

    @store_call(retry=True)
    async def boot_errors(self, models: Iterable[str]) -> dict[str, dict[str, BootError]]:
        """Per model, ``{where: BootError}`` of workers that could not start."""
        models = list(models)
        async with self.client.pipeline(transaction=False) as p:
            for m in models:
                p.hgetall(keys.boot_errors(m))
            rows = await p.execute()
        out: dict[str, dict[str, BootError]] = {}
        for m, row in zip(models, rows, strict=True):
            parsed = ((where, BootError.from_json(raw)) for where, raw in row.items())
            out[m] = {where: e for where, e in parsed if e is not None}
        return out
