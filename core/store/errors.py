"""Redis errors become Tidal's here, and only here: one map for every call and every event loop."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Awaitable, Callable, Iterator
from typing import ParamSpec, TypeVar

import redis.exceptions as rex

from core.errors import StoreUnavailable

P = ParamSpec("P")
T = TypeVar("T")


def describe(exc: BaseException) -> str:
    return f"redis: {type(exc).__name__}: {exc}"


@contextlib.contextmanager
def mapped() -> Iterator[None]:
    """Raise any redis-py error inside as ``StoreUnavailable``, with the original as its cause."""
    try:
        yield
    except rex.RedisError as exc:
        raise StoreUnavailable(describe(exc)) from exc


def store_call(fn: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
    """A store method: its redis-py errors leave it as ``StoreUnavailable``."""

    @functools.wraps(fn)
    async def call(*args: P.args, **kwargs: P.kwargs) -> T:
        with mapped():
            return await fn(*args, **kwargs)

    return call
