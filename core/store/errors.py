"""Redis errors become Tidal's here, and only here: one map for every call and every event loop.

A call is marked :func:`store_call` with ``retry=True`` when running it twice is harmless (reads,
writes of the same value, scripts that recognise their own replay). Such a call is sent again,
once, when its connection turned out to be dead: after Redis restarts, every pooled connection
is stale, and the first use of each fails although the server is back.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from typing import Any, Concatenate, ParamSpec, TypeVar

import redis.exceptions as rex

from core.errors import StoreUnavailable

log = logging.getLogger("tidal.store")

P = ParamSpec("P")
T = TypeVar("T")


def translated(exc: rex.RedisError) -> StoreUnavailable:
    """The one translation: any redis-py error is ``StoreUnavailable``, naming the original (raise it ``from``)."""
    return StoreUnavailable(f"redis: {type(exc).__name__}: {exc}")


@contextlib.contextmanager
def mapped() -> Iterator[None]:
    """Raise any redis-py error inside as ``StoreUnavailable``, with the original as its cause."""
    try:
        yield
    except rex.RedisError as exc:
        raise translated(exc) from exc


def dropped_connection(exc: BaseException) -> bool:
    """The connection failed (not the command): the same call may succeed on a fresh one."""
    cause = exc.__cause__ if isinstance(exc, StoreUnavailable) else exc
    return isinstance(cause, rex.ConnectionError | rex.TimeoutError) and not isinstance(
        cause, rex.AuthenticationError | rex.AuthorizationError
    )


async def forget_idle_connections(client: Any) -> None:
    """Close the pool's idle connections: when one is dead the others usually are too (a restart)."""
    with contextlib.suppress(Exception):
        await client.connection_pool.disconnect(inuse_connections=False)


def store_call(
    *, retry: bool
) -> Callable[[Callable[Concatenate[Any, P], Awaitable[T]]], Callable[Concatenate[Any, P], Coroutine[Any, Any, T]]]:
    """Map errors of a store method (of a class with a ``client``); with ``retry``, send it once more
    after a dropped connection. Every public store method says which, so the choice is visible."""

    def decorate(
        fn: Callable[Concatenate[Any, P], Awaitable[T]],
    ) -> Callable[Concatenate[Any, P], Coroutine[Any, Any, T]]:
        async def call(self: Any, /, *args: P.args, **kwargs: P.kwargs) -> T:
            # try/except rather than mapped(): this runs on every call, and a generator-based
            # context manager costs more than the rest of the wrapper.
            try:
                return await fn(self, *args, **kwargs)
            except rex.RedisError as exc:
                if not dropped_connection(exc):
                    raise translated(exc) from exc
                await forget_idle_connections(self.client)
                if not retry:
                    raise translated(exc) from exc
                log.info("%s: connection dropped (%s); sending it again", fn.__name__, translated(exc))
            with mapped():
                return await fn(self, *args, **kwargs)

        functools.update_wrapper(call, fn)
        return call

    return decorate
