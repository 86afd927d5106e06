"""Loading a model handler named in ``tidal.toml`` (never one named by a request or by Redis)."""

from __future__ import annotations

import importlib
from typing import Any, Protocol, runtime_checkable

from core.errors import ConfigError


@runtime_checkable
class Handler(Protocol):
    """What a model plugs in: ``load()`` once per process, then ``predict(input)`` per job."""

    def load(self) -> None: ...

    def predict(self, input: Any) -> Any: ...


def load_handler(spec: str, options: dict[str, Any]) -> Handler:
    """Import ``module:attribute``, build it with ``options`` and call ``load()``."""
    module_name, _, attr = spec.partition(":")
    try:
        target = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"handler {spec!r} cannot be imported: {exc}") from exc
    handler = target(**options) if isinstance(target, type) else target
    if not isinstance(handler, Handler):
        raise ConfigError(f"handler {spec!r} has no load() and predict(input)")
    handler.load()
    return handler
