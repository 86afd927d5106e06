"""Where a worker's model settings come from: the host's config file if it names the model, else the registry."""

from __future__ import annotations

import contextlib
import os
import socket
import time
from dataclasses import dataclass

from core.errors import ConfigError, StoreUnavailable
from core.registry import BootError, WorkerSpec
from core.settings import Settings
from core.store import WorkerBootStore


class UnknownModel(ConfigError):
    """Neither the config file nor the registry has the model."""


@dataclass(frozen=True, slots=True)
class Resolved:
    spec: WorkerSpec
    source: str  # "config file <path>" or "registry revision <n>"


def config_path() -> str:
    return os.environ.get("TIDAL_CONFIG", "tidal.toml")


async def resolve(name: str, settings: Settings, store: WorkerBootStore) -> Resolved:
    """The model's spec; a config file on the host that names the model wins over the registry."""
    if name in settings.models:
        return Resolved(WorkerSpec.from_settings(settings, name), f"config file {config_path()}")
    entry = await store.registry_entry(name)
    if entry is not None:
        return Resolved(entry.spec, f"registry revision {entry.revision} ({entry.digest})")
    registered = await store.registered_models()
    in_file = sorted(settings.models)
    raise UnknownModel(
        f"unknown model {name!r}: the registry has {', '.join(registered) or 'no models'}"
        f"{' and the config file has ' + ', '.join(in_file) if in_file else ''}; "
        "publish it with `tidal models push` (or start the API) from the tidal.toml that declares it"
    )


async def report(store: WorkerBootStore, model: str, where: str, error: str, *, final: bool) -> None:
    """Tell the autoscaler why this worker could not start; losing the report only costs time."""
    with contextlib.suppress(StoreUnavailable):
        await store.report_boot_error(model, where or socket.gethostname(), BootError(error, time.time(), final))

