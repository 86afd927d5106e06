"""What endpoints receive through ``Depends``: the API's context (settings, the store as the
API's narrow interface, the long-poll waiters), built once by the lifespan."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request

from api.waiters import CompletionWaiters
from core.settings import ModelSettings, Settings
from core.store import ApiStore


@dataclass(frozen=True, slots=True)
class ApiContext:
    settings: Settings
    store: ApiStore
    waiters: CompletionWaiters

    def model(self, name: str) -> ModelSettings:
        """The model's settings; 404 naming the known models if there is no such model."""
        models = self.settings.models
        if name not in models:
            raise HTTPException(404, f"unknown model {name!r}; known: {', '.join(sorted(models))}")
        return models[name]


# One dependency, and a coroutine: each dependency costs FastAPI work on every request, and a
# plain ``def`` one would also cost a thread hop. Tests may override it
# (``app.dependency_overrides[get_context]``).
async def get_context(request: Request) -> ApiContext:
    return request.app.state.context  # type: ignore[no-any-return]


Context = Annotated[ApiContext, Depends(get_context)]
