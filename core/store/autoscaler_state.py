"""The autoscaler's records: its lease, its saved state, and each model's last scaling decision.

Only the holder of the lease acts, so overlapping cron runs (or a cron run next to a loop)
never launch or stop the same capacity twice. The lease is short and its holder renews it
while it works (``autoscaler/lease.py``), so a holder that dies stops the others for seconds.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from core import keys
from core.fleet import ScaleRecord
from core.store.backend import Backend
from core.store.errors import store_call
from core.store.scripts import (
    LEASE,
    RELEASE,
    SAVE_STATE,
    LeaseArgs,
    LeaseKeys,
    ReleaseArgs,
    SaveStateArgs,
    SaveStateKeys,
)


@dataclass(frozen=True, slots=True)
class Lease:
    token: str
    ttl_s: float


class AutoscalerRecords(Backend):
    # The lease calls are safe to send twice: they act only for their token, and taking or
    # extending a lease the token holds is the same thing (lease.lua).

    @store_call(retry=True)
    async def take_lease(self, ttl_s: float) -> Lease | None:
        """A new lease for ``ttl_s``, or ``None`` while another holder's is alive."""
        lease = Lease(secrets.token_hex(8), ttl_s)
        return lease if await self._lease(lease) else None

    @store_call(retry=True)
    async def renew_lease(self, lease: Lease) -> bool:
        """Extend the lease for its ttl from now; false if another holder has it."""
        return await self._lease(lease)

    async def _lease(self, lease: Lease) -> bool:
        held = await self.scripts(LEASE, LeaseKeys(lock=keys.AUTOSCALER_LOCK),
                                  LeaseArgs(token=lease.token, ttl_ms=max(1, int(lease.ttl_s * 1000))))
        return bool(held)

    @store_call(retry=True)
    async def release_lease(self, lease: Lease) -> None:
        await self.scripts(RELEASE, LeaseKeys(lock=keys.AUTOSCALER_LOCK), ReleaseArgs(token=lease.token))

    @store_call(retry=True)
    async def load_autoscaler_state(self) -> str | None:
        """The saved state's JSON text (its form is the autoscaler's), or ``None``."""
        return await self.client.get(keys.AUTOSCALER_STATE)  # type: ignore[no-any-return]

    @store_call(retry=True)
    async def save_autoscaler_state(self, lease: Lease, text: str) -> bool:
        """Write the state if ``lease`` is still held; false if it was lost."""
        saved = await self.scripts(SAVE_STATE, SaveStateKeys(lock=keys.AUTOSCALER_LOCK, state=keys.AUTOSCALER_STATE),
                                   SaveStateArgs(token=lease.token, text=text))
        return bool(saved)

    @store_call(retry=True)
    async def record_scale(self, model: str, record: ScaleRecord) -> None:
        """The model's last decision, for ``GET /v1/models``."""
        await self.client.hset(keys.model_scale(model), mapping=record.to_hash())
