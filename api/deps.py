"""What endpoints receive through ``Depends``: the store (as the API's narrow interface), the
settings, the long-poll waiters, and a model's settings (404 for a model ``tidal.toml`` lacks)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request

from api.waiters import CompletionWaiters
from core.settings import ModelSettings, Settings
from core.store import ApiStore


def get_settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


def get_store(request: Request) -> ApiStore:
    return request.app.state.store  # type: ignore[no-any-return]


def get_waiters(request: Request) -> CompletionWaiters:
    return request.app.state.waiters  # type: ignore[no-any-return]


SettingsDep = Annotated[Settings, Depends(get_settings)]
StoreDep = Annotated[ApiStore, Depends(get_store)]
WaitersDep = Annotated[CompletionWaiters, Depends(get_waiters)]


def model_settings(model: str, settings: SettingsDep) -> ModelSettings:
    """The model's settings; 404 naming the known models if there is no such model."""
    if model not in settings.models:
        raise HTTPException(404, f"unknown model {model!r}; known: {', '.join(sorted(settings.models))}")
    return settings.models[model]


KnownModel = Annotated[ModelSettings, Depends(model_settings)]
