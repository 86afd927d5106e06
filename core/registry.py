"""The model registry's records: each model's settings as published to Redis, so a worker needs only ``REDIS_URL``.

Publishers are the operator's own tools, reading ``tidal.toml``: the API at start, ``tidal up``
and ``tidal models push``. A worker started with ``--model m`` and no config file that names
``m`` reads ``m``'s spec from the registry. Each entry is versioned: its digest is a hash of the
spec, and its revision grows by one whenever a publish changes the digest (publishing the same
settings again changes nothing), so the autoscaler can tell when a broken pool was fixed.

Trust: a spec names a handler to import and a package to install, so whoever may write to this
Redis may run code on the workers. Redis must be reachable only by Tidal's hosts (see
``infra/``: the Redis security group admits workers and API hosts only).

Workers that cannot start (unknown model, a handler that does not import) record a
:class:`BootError`, so the autoscaler reports the pool as broken without waiting for its boot
timeout. The Redis side of all this is ``core/store/registry.py``; this module does no I/O.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from pydantic import BaseModel, ConfigDict, ValidationError

from core.settings import ModelSettings, Settings, WorkerSettings

# Boot errors are news for a while, then history: the hash expires this long after the last one.
BOOT_ERRORS_TTL_S: Final = 86_400


class RegistryField(StrEnum):
    """Every field of a model's registry entry hash."""

    SPEC = "spec"  # the WorkerSpec as canonical JSON
    DIGEST = "digest"
    REVISION = "revision"  # grows by one when a publish changes the digest (publish.lua)
    PUBLISHED_AT = "published_at"
    SOURCE = "source"  # who published it


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


def specs(settings: Settings) -> dict[str, WorkerSpec]:
    """The spec of every model of ``settings``: what its publishers publish."""
    return {name: WorkerSpec.from_settings(settings, name) for name in settings.models}


@dataclass(frozen=True, slots=True)
class Entry:
    name: str
    spec: WorkerSpec
    digest: str
    revision: int
    published_at: float
    source: str

    @classmethod
    def from_hash(cls, name: str, h: dict[str, str]) -> Entry | None:
        try:
            spec = WorkerSpec.model_validate_json(h[RegistryField.SPEC])
            return cls(name, spec, h[RegistryField.DIGEST], int(h[RegistryField.REVISION]),
                       float(h[RegistryField.PUBLISHED_AT]), h.get(RegistryField.SOURCE, ""))
        except (KeyError, ValueError, ValidationError):
            # Written by another Tidal version, or by hand: as good as not registered.
            return None


@dataclass(frozen=True, slots=True)
class Published:
    name: str
    revision: int
    changed: bool


@dataclass(frozen=True, slots=True)
class BootError:
    error: str
    at: float
    final: bool  # the worker exited for good (EXIT_CONFIG); otherwise it may come up on a restart

    def to_json(self) -> str:
        return json.dumps({"error": self.error, "at": self.at, "final": self.final})

    @classmethod
    def from_json(cls, raw: str) -> BootError | None:
        try:
            d = json.loads(raw)
            return cls(str(d["error"]), float(d["at"]), bool(d.get("final", False)))
        except (ValueError, KeyError, TypeError):
            return None
