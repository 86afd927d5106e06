"""Measure, decide and act against a real Redis, with the in-memory provider and a manual clock.

Workers are registered through the real ``Store`` the way a booting worker does; jobs are
ids pushed onto the model, worker and active lists the registry contract names.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import redis

from autoscaler import lease
from autoscaler.fake_provider import FakeProvider
from autoscaler.loop import TickReport, run_loop, run_once
from autoscaler.provider import Instance
from autoscaler.state import from_json
from core import keys
from core.errors import ProviderError, ThrottledError
from core.fleet import WorkerRecord
from core.jobs import NewJob
from core.settings import AutoscalerSettings, ModelSettings, Settings
from core.store import Store

MODEL = "echo"


class Clock:
    def __init__(self, t: float = 1_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def settings(cost_bias: float = 100.0, **autoscaler: float) -> Settings:
    # A late job priced at 100 cold starts: every queued job is worth a worker, so a burst launches
    # up to max_step per tick and max_workers, the bounds these tests are about. The policy's own
    # rules are pinned in tests/unit/test_autoscaler_policy.py.
    return Settings(
        models={MODEL: ModelSettings(handler="worker.handlers.echo:Echo", max_workers=3, mean_run_s=1.0,
                                     cost_bias=cost_bias)},
        autoscaler=AutoscalerSettings(
            **{  # type: ignore[arg-type]
                "acceptable_wait_s": 3.0,  # backlog of 4 jobs per one-slot worker justified
                "scale_down_window_s": 10.0,
                "idle_timeout_s": 30.0,
                "boot_timeout_s": 60.0,
                "max_step": 2,
                "launch_backoff_s": 20.0,
                **autoscaler,
            }
        ),
    )


async def boot(store: Store, inst: Instance, clock: Clock) -> str:
    """Register the worker that ``inst`` runs, as the worker process does on start."""
    wid = f"w-{inst.id}"
    await store.register_worker(WorkerRecord(wid, inst.pool, "1", 1.0, 1, "test", 1, inst.id, clock()), ttl_s=600)
    return wid


def with_store(redis_url: str, body: Callable[[Store], Awaitable[None]]) -> None:
    async def main() -> None:
        store = Store.from_url(redis_url)
        try:
            await body(store)
        finally:
            await store.close()

    asyncio.run(main())


def queue_jobs(r: redis.Redis, n: int) -> None:
    r.rpush(keys.model_queue(MODEL), *[f"job-{i}" for i in range(n)])


def test_first_job_starts_one_worker_and_later_runs_do_nothing_new(r: redis.Redis, redis_url: str) -> None:
    clock = Clock()
    # The provider lists a new instance only 30 s later: the autoscaler must remember its launch.
    provider = FakeProvider(clock, list_lag_s=30.0)
    cfg = settings(cost_bias=1.0)  # 3 jobs of 1 s justify no second launch while the first boots

    async def body(store: Store) -> None:
        report = await run_once(store, provider, cfg, clock=clock)
        assert report.decisions[MODEL].desired == 0
        assert provider.launch_calls == []

        queue_jobs(r, 1)
        clock.t += 1
        report = await run_once(store, provider, cfg, clock=clock)
        assert report.decisions[MODEL].desired == 1
        assert len(provider.launch_calls) == 1 and provider.launch_calls[0][1] == 1

        queue_jobs(r, 2)
        for _ in range(3):
            clock.t += 2
            report = await run_once(store, provider, cfg, clock=clock)
            assert report.fleets[MODEL].observation().booting == 1
            assert report.actions[MODEL].launch == 0
        assert len(provider.alive(MODEL)) == 1

    with_store(redis_url, body)


def test_arrivals_and_completions_since_the_last_tick_reach_the_policy(r: redis.Redis, redis_url: str) -> None:
    clock = Clock()
    provider = FakeProvider(clock)

    async def body(store: Store) -> None:
        await run_once(store, provider, settings(), clock=clock)
        for _ in range(5):
            job = NewJob(str(uuid.uuid4()), MODEL, "1", "{}", "normal", timeout_s=30, ttl_s=600, max_attempts=1)
            await store.submit(job, max_queue_len=100, idempotency_key=None, now=clock())
        clock.t += 2
        report = await run_once(store, provider, settings(), clock=clock)
        seen = report.fleets[MODEL].observation()
        assert (seen.arrivals, seen.completions, seen.queued, seen.booting) == (5, 0, 5, 0)
        launched = report.actions[MODEL].launch
        assert launched >= 1
        clock.t += 2
        report = await run_once(store, provider, settings(), clock=clock)
        seen = report.fleets[MODEL].observation()
        assert seen.arrivals == 0  # counted once
        assert seen.booting_age_s == (2.0,) * launched  # launched one tick ago

    with_store(redis_url, body)


def test_burst_scales_up_by_max_step_to_max_workers(r: redis.Redis, redis_url: str) -> None:
    clock = Clock()
    provider = FakeProvider(clock)

    async def body(store: Store) -> None:
        queue_jobs(r, 40)
        await run_once(store, provider, settings(), clock=clock)
        assert len(provider.alive(MODEL)) == 2
        clock.t += 1
        await run_once(store, provider, settings(), clock=clock)
        assert len(provider.alive(MODEL)) == 3  # max_workers
        clock.t += 1
        await run_once(store, provider, settings(), clock=clock)
        assert len(provider.alive(MODEL)) == 3

    with_store(redis_url, body)


async def two_workers_then_drain_the_idle_one(
    r: redis.Redis, store: Store, provider: FakeProvider, cfg: Settings, clock: Clock
) -> tuple[str, str, tuple[Instance, Instance]]:
    """A burst brings up workers a and b; the queue empties with a busy and b idle; once the
    scale-down window has passed, b is drained. Returns (a's worker id, b's worker id, (b, a))."""
    queue_jobs(r, 8)
    await run_once(store, provider, cfg, clock=clock)
    a, b = provider.alive(MODEL)
    wa, wb = await boot(store, a, clock), await boot(store, b, clock)
    r.delete(keys.model_queue(MODEL))
    r.rpush(keys.worker_active(wa), "job-a")
    clock.t += 1
    report = await run_once(store, provider, cfg, clock=clock)
    assert report.decisions[MODEL].desired == 2  # the window opens
    clock.t += 10
    report = await run_once(store, provider, cfg, clock=clock)
    assert report.decisions[MODEL].desired == 1
    assert report.actions[MODEL].drain == (wb,)
    return wa, wb, (b, a)


def test_scale_in_drains_then_stops_only_an_empty_worker(r: redis.Redis, redis_url: str) -> None:
    clock = Clock()
    provider = FakeProvider(clock)
    cfg = settings()

    async def body(store: Store) -> None:
        wa, wb, (b, a) = await two_workers_then_drain_the_idle_one(r, store, provider, cfg, clock)
        assert r.hget(keys.worker_info(wb), "state") == "draining"
        assert r.hget(keys.worker_info(wa), "state") == "ready"
        assert provider.terminate_calls == []

        # The dispatcher raced the drain and handed b one more job: b keeps running.
        r.rpush(keys.worker_queue(wb), "job-late")
        clock.t += 1
        report = await run_once(store, provider, cfg, clock=clock)
        assert report.actions[MODEL].terminate == ()
        assert report.actions[MODEL].launch == 0  # draining capacity is not replaced

        r.delete(keys.worker_queue(wb))
        clock.t += 1
        report = await run_once(store, provider, cfg, clock=clock)
        assert report.actions[MODEL].terminate == (b.id,)
        assert [i.id for i in provider.alive(MODEL)] == [a.id]

    with_store(redis_url, body)


def test_idle_fleet_goes_to_zero_after_idle_timeout(r: redis.Redis, redis_url: str) -> None:
    clock = Clock()
    provider = FakeProvider(clock)
    cfg = settings(scale_down_window_s=40.0)  # the hold would keep it longer: idle_timeout_s caps it

    async def body(store: Store) -> None:
        queue_jobs(r, 1)
        await run_once(store, provider, cfg, clock=clock)
        (inst,) = provider.alive(MODEL)
        wid = await boot(store, inst, clock)
        r.delete(keys.model_queue(MODEL))

        first_idle_tick = clock.t + 1
        while r.hget(keys.worker_info(wid), "state") != "draining":
            clock.t += 1
            report = await run_once(store, provider, cfg, clock=clock)
            assert clock.t - first_idle_tick <= 30, report.decisions[MODEL].reason
        assert clock.t - first_idle_tick == 30
        clock.t += 1
        await run_once(store, provider, cfg, clock=clock)
        assert provider.alive(MODEL) == []

    with_store(redis_url, body)


def test_instance_without_a_worker_after_boot_timeout_is_a_failed_launch(
    r: redis.Redis, redis_url: str
) -> None:
    clock = Clock()
    provider = FakeProvider(clock)
    cfg = settings()

    async def body(store: Store) -> None:
        queue_jobs(r, 1)
        await run_once(store, provider, cfg, clock=clock)
        (stuck,) = provider.alive(MODEL)
        clock.t += 59
        report = await run_once(store, provider, cfg, clock=clock)
        assert report.actions[MODEL].launch == 0
        clock.t += 1
        report = await run_once(store, provider, cfg, clock=clock)
        assert report.actions[MODEL].failed == (stuck.id,)
        assert stuck.id in report.actions[MODEL].terminate
        assert report.actions[MODEL].launch == 1  # the job still waits: a replacement
        (replacement,) = provider.alive(MODEL)
        assert replacement.id != stuck.id
        assert r.hget(keys.model_scale(MODEL), "failed_launches") == "1"

    with_store(redis_url, body)


def test_failed_read_skips_the_tick_and_keeps_state(r: redis.Redis, redis_url: str) -> None:
    clock = Clock()
    provider = FakeProvider(clock)

    async def body(store: Store) -> None:
        queue_jobs(r, 1)
        saved_before = r.get(keys.AUTOSCALER_STATE)
        provider.failures["list"].append(ProviderError("DescribeInstances timed out"))
        report = await run_once(store, provider, settings(), clock=clock)
        assert report.status == "skipped" and "DescribeInstances" in report.detail
        assert provider.launch_calls == []
        assert r.get(keys.AUTOSCALER_STATE) == saved_before
        assert r.exists(keys.model_scale(MODEL)) == 0

    with_store(redis_url, body)


def test_slow_read_is_stale_and_skips_the_tick(r: redis.Redis, redis_url: str) -> None:
    clock = Clock()

    class SlowListing(FakeProvider):
        def list_instances(self, pool: str | None = None) -> list[Instance]:
            clock.t += 20  # the listing took 20 s
            return super().list_instances(pool)

    provider = SlowListing(clock)

    async def body(store: Store) -> None:
        queue_jobs(r, 1)
        report = await run_once(store, provider, settings(max_read_s=15.0), clock=clock)
        assert report.status == "skipped" and "max_read_s" in report.detail
        assert provider.launch_calls == []

    with_store(redis_url, body)


def test_failed_launch_backs_off_the_pool(r: redis.Redis, redis_url: str) -> None:
    clock = Clock()
    provider = FakeProvider(clock, capacity=0)

    async def body(store: Store) -> None:
        queue_jobs(r, 1)
        await run_once(store, provider, settings(), clock=clock)
        assert len(provider.launch_calls) == 1
        clock.t += 10
        report = await run_once(store, provider, settings(), clock=clock)
        assert len(provider.launch_calls) == 1
        assert "launches paused" in report.actions[MODEL].describe()
        provider.capacity = None
        provider.failures["launch"].append(ThrottledError("RequestLimitExceeded"))
        clock.t += 10
        await run_once(store, provider, settings(), clock=clock)
        assert len(provider.launch_calls) == 2
        clock.t += 20
        await run_once(store, provider, settings(), clock=clock)
        assert len(provider.alive(MODEL)) == 1
        tokens = [t for _, _, t in provider.launch_calls]
        assert len(set(tokens)) == 3  # a launch that failed is not replayed under its token

    with_store(redis_url, body)


def test_run_lost_before_saving_relaunches_under_the_same_token(r: redis.Redis, redis_url: str) -> None:
    clock = Clock()
    provider = FakeProvider(clock, list_lag_s=60.0)

    async def body(store: Store) -> None:
        await run_once(store, provider, settings(), clock=clock)
        before = r.get(keys.AUTOSCALER_STATE)
        assert before is not None
        queue_jobs(r, 1)
        clock.t += 1
        await run_once(store, provider, settings(), clock=clock)
        # That run's state never reached Redis (the process died after launching):
        r.set(keys.AUTOSCALER_STATE, before)
        clock.t += 1
        await run_once(store, provider, settings(), clock=clock)
        assert len(provider.launch_calls) == 2
        assert provider.launch_calls[0][2] == provider.launch_calls[1][2]
        assert len(provider.alive(MODEL)) == 1
        assert len(from_json(str(r.get(keys.AUTOSCALER_STATE))).launching) == 1

    with_store(redis_url, body)


def test_a_held_lock_makes_a_run_do_nothing(r: redis.Redis, redis_url: str) -> None:
    clock = Clock()
    provider = FakeProvider(clock)

    async def body(store: Store) -> None:
        queue_jobs(r, 5)
        r.set(keys.AUTOSCALER_LOCK, "someone-else", px=60_000)
        report = await run_once(store, provider, settings(), clock=clock)
        assert report.status == "locked"
        assert provider.launch_calls == []
        assert r.get(keys.AUTOSCALER_LOCK) == "someone-else"
        assert r.exists(keys.AUTOSCALER_STATE) == 0

    with_store(redis_url, body)


def test_overlapping_runs_launch_once(r: redis.Redis, redis_url: str) -> None:
    clock = Clock()
    provider = FakeProvider(clock)

    async def body(store: Store) -> None:
        queue_jobs(r, 5)
        runs = [run_once(store, provider, settings(), clock=clock) for _ in range(4)]
        reports = await asyncio.gather(*runs)
        assert sorted(rep.status for rep in reports) == ["done", "locked", "locked", "locked"]
        assert len(provider.launch_calls) == 1
        assert r.exists(keys.AUTOSCALER_LOCK) == 0

    with_store(redis_url, body)


def test_lock_lost_mid_tick_does_not_overwrite_state(r: redis.Redis, redis_url: str) -> None:
    async def body(store: Store) -> None:
        held = await store.take_lease(60.0)
        assert held is not None
        r.set(keys.AUTOSCALER_LOCK, "the-next-run")
        assert not await lease.save(store, held, await lease.load(store))
        assert r.exists(keys.AUTOSCALER_STATE) == 0
        await store.release_lease(held)
        assert r.get(keys.AUTOSCALER_LOCK) == "the-next-run"

    with_store(redis_url, body)


def test_decision_is_recorded_for_the_api(r: redis.Redis, redis_url: str) -> None:
    clock = Clock()
    provider = FakeProvider(clock)

    async def body(store: Store) -> None:
        queue_jobs(r, 12)
        await run_once(store, provider, settings(), clock=clock)
        scale = {str(k): str(v) for k, v in r.hgetall(keys.model_scale(MODEL)).items()}
        assert scale["desired"] == "2" and scale["current"] == "0"
        assert scale["reason"].startswith("queued=12 in_flight=0 workers=0 busy=0 booting=0")
        assert "queued and no worker: launching" in scale["reason"] and "max_step=2" in scale["reason"]
        assert float(scale["at"]) == clock.t
        assert scale["actions"] == "launch 2"

    with_store(redis_url, body)


def test_dry_run_changes_nothing(r: redis.Redis, redis_url: str) -> None:
    clock = Clock()
    provider = FakeProvider(clock)

    async def body(store: Store) -> None:
        queue_jobs(r, 12)
        report = await run_once(store, provider, settings(), dry_run=True, clock=clock)
        assert report.actions[MODEL].launch == 2
        assert "desired 2" in report.lines()[0]
        assert provider.launch_calls == []
        assert r.exists(keys.AUTOSCALER_STATE, keys.AUTOSCALER_LOCK, keys.model_scale(MODEL)) == 0

    with_store(redis_url, body)


def test_failed_terminate_is_retried_by_the_next_tick(r: redis.Redis, redis_url: str) -> None:
    clock = Clock()
    provider = FakeProvider(clock)
    cfg = settings(scale_down_window_s=0.0, idle_timeout_s=0.0)

    async def body(store: Store) -> None:
        queue_jobs(r, 1)
        await run_once(store, provider, cfg, clock=clock)
        (inst,) = provider.alive(MODEL)
        await boot(store, inst, clock)
        r.delete(keys.model_queue(MODEL))
        clock.t += 1
        await run_once(store, provider, cfg, clock=clock)  # drains
        provider.failures["terminate"].append(ProviderError("TerminateInstances: internal error"))
        clock.t += 1
        await run_once(store, provider, cfg, clock=clock)
        assert provider.alive(MODEL) == [inst]
        clock.t += 1
        await run_once(store, provider, cfg, clock=clock)
        assert provider.alive(MODEL) == []
        assert provider.terminate_calls == [[inst.id], [inst.id]]

    with_store(redis_url, body)


def test_loop_ticks_until_stopped_and_dry_run_windows_advance(r: redis.Redis, redis_url: str) -> None:
    clock = Clock()
    provider = FakeProvider(clock)
    cfg = settings(idle_timeout_s=3.0, scale_down_window_s=60.0)

    async def body(store: Store) -> None:
        queue_jobs(r, 1)
        await run_once(store, provider, cfg, clock=clock)
        (inst,) = provider.alive(MODEL)
        await boot(store, inst, clock)
        r.delete(keys.model_queue(MODEL))

        stop = asyncio.Event()
        reports: list[TickReport] = []

        def on_tick(report: TickReport) -> None:
            reports.append(report)
            clock.t += 1
            if len(reports) == 5:
                stop.set()

        await run_loop(
            store, provider, cfg, stop, interval_s=0.01, dry_run=True, clock=clock, on_tick=on_tick
        )
        # The model is idle from the first tick on; the idle clock reaches idle_timeout_s on the fourth
        # only because the dry run carries its state from tick to tick (nothing is saved or acted on).
        assert [rep.decisions[MODEL].desired for rep in reports] == [1, 1, 1, 0, 0]
        assert "idle_timeout" in reports[3].decisions[MODEL].reason
        assert provider.launch_calls == [(MODEL, 1, provider.launch_calls[0][2])]
        assert provider.alive(MODEL) == [inst]
        assert r.exists(keys.model_scale(MODEL)) == 1  # only from the real run before the loop

    with_store(redis_url, body)


class ProviderWithMemory(FakeProvider):
    """Counts its launches in the memory it exports, like the EC2 provider's unavailable pairs."""

    def __init__(self, clock: Clock) -> None:
        super().__init__(clock)
        self.memory: dict[str, Any] = {}

    def export_state(self) -> dict[str, Any]:
        return dict(self.memory)

    def import_state(self, state: Mapping[str, Any]) -> None:
        self.memory = dict(state)

    def launch(self, pool: str, count: int, token: str) -> list[Instance]:
        self.memory["launches"] = self.memory.get("launches", 0) + 1
        return super().launch(pool, count, token)


def test_provider_memory_survives_from_one_run_to_the_next(r: redis.Redis, redis_url: str) -> None:
    clock = Clock()

    async def body(store: Store) -> None:
        queue_jobs(r, 1)
        await run_once(store, ProviderWithMemory(clock), settings(), clock=clock)
        queue_jobs(r, 20)
        clock.t += 1
        second = ProviderWithMemory(clock)  # the next cron run's fresh provider
        await run_once(store, second, settings(), clock=clock)
        assert second.memory == {"launches": 2}
        assert from_json(str(r.get(keys.AUTOSCALER_STATE))).provider == {"launches": 2}

    with_store(redis_url, body)


def test_load_returning_puts_a_draining_worker_back_instead_of_launching(r: redis.Redis, redis_url: str) -> None:
    clock = Clock()
    provider = FakeProvider(clock)
    cfg = settings(cost_bias=1.0)  # a backlog that justifies 2 workers but no launch

    async def body(store: Store) -> None:
        _, wb, _ = await two_workers_then_drain_the_idle_one(r, store, provider, cfg, clock)
        r.rpush(keys.worker_active(wb), "job-b2")  # still finishing work when the load comes back
        queue_jobs(r, 4)  # with a's job, 5 jobs: 2 workers at 4 per worker
        clock.t += 1
        report = await run_once(store, provider, cfg, clock=clock)
        assert report.actions[MODEL].undrain == (wb,)
        assert report.actions[MODEL].launch == 0
        assert r.hget(keys.worker_info(wb), "state") == "ready"
        assert len(provider.alive(MODEL)) == 2

    with_store(redis_url, body)
