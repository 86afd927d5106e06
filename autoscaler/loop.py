"""One autoscaler tick (measure, decide, act), a locked run of it, and the repeating loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Literal

from autoscaler import health, lease
from autoscaler.act import Actions, apply, plan
from autoscaler.observe import ModelFleet, measure, read
from autoscaler.policy import Decision, ScalingConfig, decide
from autoscaler.provider import Provider
from autoscaler.state import AutoscalerState, ProviderWithState, forget_old
from core.errors import ProviderError, StoreUnavailable
from core.fleet import ScaleRecord
from core.settings import Settings
from core.store import AutoscalerStore, Lease

log = logging.getLogger("tidal.autoscaler")

Clock = Callable[[], float]
Status = Literal["done", "skipped", "locked"]


@dataclass(frozen=True, slots=True)
class TickReport:
    status: Status
    detail: str = ""
    decisions: dict[str, Decision] = field(default_factory=dict)
    actions: dict[str, Actions] = field(default_factory=dict)
    fleets: dict[str, ModelFleet] = field(default_factory=dict)

    def lines(self) -> list[str]:
        """One human-readable line per model (or one saying why nothing was decided)."""
        if self.status != "done":
            return [f"{self.status}: {self.detail}"]
        out = []
        for model, d in sorted(self.decisions.items()):
            obs = self.fleets[model].observation()
            out.append(
                f"{model}: desired {d.desired}, current {obs.workers + obs.booting}: {d.reason}; "
                f"{self.actions[model].describe()}"
            )
        return out


def scaling_configs(settings: Settings) -> dict[str, ScalingConfig]:
    return {m: ScalingConfig.from_settings(settings.autoscaler, ms) for m, ms in settings.models.items()}


async def _record(store: AutoscalerStore, report: TickReport, state: AutoscalerState, now: float) -> None:
    """Publish each model's decision for ``GET /v1/models``; losing one is only logged."""
    for model, d in report.decisions.items():
        obs = report.fleets[model].observation()
        broken = state.broken.get(model)
        record = ScaleRecord(
            desired=d.desired, current=obs.workers + obs.booting, workers=obs.workers, booting=obs.booting,
            draining=obs.draining, reason=f"pool broken: {broken.reason}; {d.reason}" if broken else d.reason,
            actions=report.actions[model].describe(), failed_launches=state.failed_launches.get(model, 0), at=now,
            broken=broken.reason if broken else "",
        )
        try:
            await store.record_scale(model, record)
        except StoreUnavailable as exc:
            log.warning("%s: could not record scale decision: %s", model, exc)


async def tick(
    store: AutoscalerStore,
    provider: Provider,
    settings: Settings,
    state: AutoscalerState,
    clock: Clock,
    *,
    act: bool = True,
) -> tuple[TickReport, AutoscalerState]:
    """Measure, decide and (with ``act``) reconcile every configured model once.

    A read that fails, or that takes longer than ``max_read_s`` and so may join an old
    instance list with a new registry, skips the tick: nothing is decided on missing data.
    """
    cfg = settings.autoscaler
    models = list(settings.models)
    if isinstance(provider, ProviderWithState):
        provider.import_state(state.provider)
    started = clock()
    try:
        observed = await read(store, provider, models)
    except (StoreUnavailable, ProviderError) as exc:
        log.warning("tick skipped, fleet unreadable: %s", exc)
        return TickReport("skipped", f"fleet unreadable: {exc}"), state
    now = clock()
    if now - started > cfg.max_read_s:
        detail = f"fleet read took {now - started:.1f}s > max_read_s {cfg.max_read_s:g}s"
        log.warning("tick skipped, stale read: %s", detail)
        return TickReport("skipped", detail), state

    # Twice the boot timeout: an unlisted launch must still be known when it times out, so
    # that it is terminated as a failed launch rather than forgotten.
    state = forget_old(state, now, 2 * cfg.boot_timeout_s)
    fleets = measure(
        observed.snapshot,
        observed.instances,
        {m: ms.slots for m, ms in settings.models.items()},
        state.launching,
        state.stopped,
        cfg.boot_timeout_s,
        now,
        boot_errors=observed.boot_errors,
        counted=state.counters,
    )
    state = replace(state, counters={m: f.totals for m, f in fleets.items()})
    for m, fleet in fleets.items():
        state = health.resume_if_changed(state, m, observed.digests.get(m))
        state = health.registered(state, m, fleet.registered)
    observations = {m: f.observation() for m, f in fleets.items()}
    decisions, policy_state = decide(observations, scaling_configs(settings), state.policy, now)
    state = replace(state, policy=policy_state)
    actions = {
        m: plan(fleets[m], d.desired, now, state.backoff_until.get(m), state.broken.get(m))
        for m, d in decisions.items()
    }
    report = TickReport("done", decisions=decisions, actions=actions, fleets=fleets)
    if act:
        for model in sorted(actions):
            state = await apply(actions[model], store, provider, state, now, cfg.launch_backoff_s,
                                digest=observed.digests.get(model), max_failed_boots=cfg.max_failed_boots)
        if isinstance(provider, ProviderWithState):
            state = replace(state, provider=provider.export_state())
        await _record(store, report, state, now)
    for model, line in zip(sorted(decisions), report.lines(), strict=True):
        # A steady fleet would log every interval; only ticks that change something are news.
        acting = actions[model].launch or actions[model].drain or actions[model].terminate
        log.log(logging.INFO if acting else logging.DEBUG, "%s", line)
    return report, state


async def run_once(
    store: AutoscalerStore, provider: Provider, settings: Settings, *, dry_run: bool = False, clock: Clock = time.time
) -> TickReport:
    """One tick under the lease, with state loaded from and saved to Redis.

    ``dry_run`` decides from the saved state without taking the lease, acting or saving.
    """
    cfg = settings.autoscaler

    async def work(held: Lease) -> TickReport:
        report, state = await tick(store, provider, settings, await lease.load(store), clock)
        if report.status == "done" and not await lease.save(store, held, state):
            log.warning("the lease was lost during the tick; its state was not saved")
        return report

    try:
        if dry_run:
            report, _ = await tick(store, provider, settings, await lease.load(store), clock, act=False)
            return report
        held, done = await lease.under_lease(store, work, ttl_s=cfg.lease_ttl_s, max_hold_s=cfg.lock_ttl_s)
    except StoreUnavailable as exc:
        log.warning("tick skipped: %s", exc)
        return TickReport("skipped", str(exc))
    except lease.LeaseLost as exc:
        log.error("tick stopped: %s", exc)
        return TickReport("skipped", f"tick stopped: {exc}")
    if not held or done is None:
        log.info("another autoscaler run holds the lock; nothing to do")
        return TickReport("locked", "another autoscaler run holds the lock")
    return done


async def run_loop(
    store: AutoscalerStore,
    provider: Provider,
    settings: Settings,
    stop: asyncio.Event,
    *,
    interval_s: float | None = None,
    dry_run: bool = False,
    clock: Clock = time.time,
    on_tick: Callable[[TickReport], None] | None = None,
) -> None:
    """Run a tick every ``interval_s`` (default: the configured one) until ``stop`` is set.

    A dry run keeps its state in memory, so its windows advance as a real run's would.
    """
    every = interval_s if interval_s is not None else settings.autoscaler.interval_s
    dry_state: AutoscalerState | None = None
    while not stop.is_set():
        if dry_run:
            try:
                dry_state = dry_state or await lease.load(store)
                report, dry_state = await tick(store, provider, settings, dry_state, clock, act=False)
            except StoreUnavailable as exc:
                report = TickReport("skipped", str(exc))
        else:
            report = await run_once(store, provider, settings, clock=clock)
        if on_tick is not None:
            on_tick(report)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=every)
