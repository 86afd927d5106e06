"""An autoscaler that dies holding the lock must cost the others seconds, not ``lock_ttl_s``."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import pytest
import redis

from autoscaler import lease
from autoscaler.fake_provider import FakeProvider
from autoscaler.loop import run_once
from core import keys
from core.settings import ModelSettings, Settings
from core.store import Lease, Store
from tests.integration.test_autoscaler_loop import with_store
from tests.procs import ROOT

# A real autoscaler process whose provider hangs mid-tick, so it holds the lock when it is killed.
HOLDER = """
import asyncio, sys, time
from autoscaler.loop import run_once
from core.settings import ModelSettings, Settings
from core.store import Store

class Hung:
    name = "hung"
    def list_instances(self, pool=None):
        print("holding the lock", flush=True)
        time.sleep(3600)
    def launch(self, pool, count, token):
        raise AssertionError("never reached")
    def terminate(self, instance_ids):
        raise AssertionError("never reached")

async def main():
    store = Store.from_url(sys.argv[1])
    await run_once(store, Hung(), Settings(models={"echo": ModelSettings(handler="worker.handlers.echo:Echo")}))

asyncio.run(main())
"""


def test_an_autoscaler_killed_holding_the_lock_blocks_the_next_one_for_seconds(redis_url: str, r: redis.Redis) -> None:
    settings = Settings(models={"echo": ModelSettings(handler="worker.handlers.echo:Echo")})
    assert settings.autoscaler.lock_ttl_s >= 60  # the default: what a dead holder used to cost
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, redis_url], cwd=ROOT, stdout=subprocess.PIPE,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == b"holding the lock\n"
        assert r.exists(keys.AUTOSCALER_LOCK)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()

    async def next_run() -> list[str]:
        store = Store.from_url(redis_url)
        provider = FakeProvider(time.time)
        statuses = []
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                report = await run_once(store, provider, settings)
                statuses.append(report.status)
                if report.status == "done":
                    break
                await asyncio.sleep(0.25)
        finally:
            await store.close()
        return statuses

    statuses = asyncio.run(next_run())
    assert statuses[0] == "locked"  # the dead process's lock is honoured for a moment...
    assert statuses[-1] == "done", f"still locked {len(statuses) * 0.25:.0f}s after the holder died"  # ...not long


def test_the_lease_is_renewed_while_the_work_runs(redis_url: str, r: redis.Redis) -> None:
    async def body(store: Store) -> None:
        async def work(held: Lease) -> str:
            await asyncio.sleep(1.0)  # four lease lifetimes
            assert r.get(keys.AUTOSCALER_LOCK) == held.token
            assert await store.take_lease(0.25) is None  # nobody else gets it meanwhile
            return "worked"

        assert await lease.under_lease(store, work, ttl_s=0.25, max_hold_s=60) == (True, "worked")
        assert not r.exists(keys.AUTOSCALER_LOCK)  # given back at the end

    with_store(redis_url, body)


def test_work_stops_when_another_autoscaler_holds_the_lease(redis_url: str, r: redis.Redis) -> None:
    async def body(store: Store) -> None:
        async def work(held: Lease) -> None:
            r.set(keys.AUTOSCALER_LOCK, "someone-else")
            await asyncio.sleep(30)

        with pytest.raises(lease.LeaseLost, match="another autoscaler"):
            await lease.under_lease(store, work, ttl_s=0.3, max_hold_s=60)
        assert r.get(keys.AUTOSCALER_LOCK) == "someone-else"

    with_store(redis_url, body)


def test_a_tick_longer_than_lock_ttl_s_is_stopped(redis_url: str, r: redis.Redis) -> None:
    async def body(store: Store) -> None:
        with pytest.raises(lease.LeaseLost, match="lock_ttl_s"):
            await lease.under_lease(store, lambda held: asyncio.sleep(30), ttl_s=0.3, max_hold_s=0.5)
        assert not r.exists(keys.AUTOSCALER_LOCK)

    with_store(redis_url, body)
