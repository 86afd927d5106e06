"""Work under the autoscaler's lease, and the saved state that only a holder may write.

The lease is short (``lease_ttl_s``) and renewed every third of it while the work runs, so an
autoscaler killed mid-tick stops the others for at most ``lease_ttl_s``, not for as long as a
tick may take. The work is cancelled as soon as the lease cannot be vouched for: another
holder has it, renewals have failed for ``lease_ttl_s``, or the work has run ``max_hold_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from autoscaler.state import AutoscalerState, from_json, to_json
from core.errors import StoreUnavailable, TidalError
from core.store import Lease, LeaseStore

log = logging.getLogger("tidal.autoscaler")

T = TypeVar("T")


class LeaseLost(TidalError):
    """The work was stopped because the lease could no longer be vouched for."""


async def _keep(store: LeaseStore, lease: Lease, work: asyncio.Task[T], max_hold_s: float) -> str:
    """Renew until the work ends; if the lease cannot be kept, cancel the work and say why."""
    loop = asyncio.get_running_loop()
    started = confirmed = loop.time()
    while True:
        await asyncio.sleep(lease.ttl_s / 3)
        if loop.time() - started >= max_hold_s:
            reason = f"the tick ran longer than lock_ttl_s ({max_hold_s:g}s)"
            break
        try:
            if await store.renew_lease(lease):
                confirmed = loop.time()
                continue
            reason = "another autoscaler holds the lease"
            break
        except StoreUnavailable as exc:
            if loop.time() - confirmed < lease.ttl_s:
                continue  # still ours for a moment: try again
            reason = f"the lease could not be renewed for {lease.ttl_s:g}s ({exc})"
            break
    work.cancel()
    return reason


async def under_lease(
    store: LeaseStore, work: Callable[[Lease], Awaitable[T]], *, ttl_s: float, max_hold_s: float
) -> tuple[bool, T | None]:
    """``(False, None)`` if another holder has the lease, else ``(True, work's result)``.

    Raises :class:`LeaseLost` if the work was stopped because the lease was lost.
    """
    lease = await store.take_lease(ttl_s)
    if lease is None:
        return False, None
    task = asyncio.ensure_future(work(lease))
    keeper = asyncio.create_task(_keep(store, lease, task, max_hold_s))
    try:
        try:
            return True, await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if keeper.done() and not keeper.cancelled() and not (current and current.cancelling()):
                raise LeaseLost(keeper.result()) from None
            task.cancel()
            raise
    finally:
        keeper.cancel()
        await asyncio.gather(keeper, return_exceptions=True)
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(task, return_exceptions=True)
        try:
            await store.release_lease(lease)
        except StoreUnavailable as exc:
            log.warning("could not release the autoscaler lease (it lapses by itself): %s", exc)


async def load(store: LeaseStore) -> AutoscalerState:
    text = await store.load_autoscaler_state()
    if text is None:
        return AutoscalerState.fresh()
    try:
        return from_json(text)
    except ValueError as exc:
        log.error("saved autoscaler state unreadable, starting afresh: %s", exc)
        return AutoscalerState.fresh()


async def save(store: LeaseStore, lease: Lease, state: AutoscalerState) -> bool:
    """Write ``state`` if ``lease`` is still held; false if it was lost."""
    return await store.save_autoscaler_state(lease, to_json(state))
