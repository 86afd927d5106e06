"""Redis goes away and comes back: every process reconnects by itself, and nobody answers 503 once it is back.

Each test runs its own Valkey (AOF, as ``tidal up`` runs it) so that killing and restarting it
on the same port disturbs no other test.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from tests.procs import Stack, Valkey, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


@pytest.fixture
def valkey(tmp_path: Path) -> Iterator[Valkey]:
    server = Valkey(tmp_path / "valkey")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def stack(valkey: Valkey, tmp_path: Path) -> Iterator[Stack]:
    s = Stack(valkey.url, tmp_path)
    try:
        s.api()
        yield s
    except BaseException:
        print(s.logs())
        raise
    finally:
        s.stop()


def run_job(stack: Stack, timeout_s: float = 30.0) -> None:
    """Submit an echo job and wait until it succeeds, retrying while Redis is still coming back."""

    def done() -> bool:
        try:
            with httpx.Client(base_url=stack.url, timeout=15) as http:
                r = http.post("/v1/models/echo/jobs", json={"input": {"n": 1}})
                if r.status_code != 202:
                    return False
                job = http.get(f"/v1/jobs/{r.json()['id']}", params={"wait": 10})
                return job.status_code == 200 and job.json()["status"] == "succeeded"
        except httpx.TransportError:
            return False

    wait_for(done, timeout_s=timeout_s, what="a job to run end to end")


def test_a_standalone_dispatcher_survives_pubsub_kills_and_a_redis_restart(stack: Stack, valkey: Valkey) -> None:
    dispatcher = stack.dispatcher()
    stack.worker("echo")
    run_job(stack)

    with redis.Redis.from_url(valkey.url) as admin:
        killed = admin.client_kill_filter(_type="pubsub")
    assert killed >= 2  # the dispatcher's and the API's subscriptions
    run_job(stack)
    assert dispatcher.poll() is None, "the dispatcher exited when its pub/sub connection was closed"

    valkey.restart()
    run_job(stack)
    assert dispatcher.poll() is None, "the dispatcher exited when Redis restarted"
    # Still routing by events, not only by its once-a-tick sweep: its subscription is back.
    wait_for(lambda: valkey.pubsub_channels() >= {"tidal:ev:dispatch", "tidal:ev:done"}, what="subscriptions back")
    run_job(stack)



def test_no_503_once_redis_is_back(stack: Stack, valkey: Valkey) -> None:
    """Long polls in flight across a restart, and a burst right after it, all get answers, not 503."""

    async def scenario() -> tuple[list[int], list[int]]:
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        async with httpx.AsyncClient(base_url=stack.url, timeout=30, limits=limits) as http:
            ids = [(await http.post("/v1/models/idle/jobs", json={"input": i})).json()["id"] for i in range(3)]
            # Many concurrent reads, so the API's pool holds many connections that the restart leaves stale.
            await asyncio.gather(*(http.get(f"/v1/jobs/{ids[i % 3]}") for i in range(48)))
            await asyncio.sleep(1.2)  # past one appendfsync: the jobs survive the kill
            polls = [asyncio.create_task(http.get(f"/v1/jobs/{ids[i % 3]}", params={"wait": 6}))
                     for i in range(24)]
            await asyncio.sleep(0.5)
            await asyncio.to_thread(valkey.restart)
            burst = await asyncio.gather(*(http.get(f"/v1/jobs/{ids[i % 3]}") for i in range(48)))
            return [r.status_code for r in await asyncio.gather(*polls)], [r.status_code for r in burst]

    polls, burst = asyncio.run(scenario())
    assert polls == [200] * len(polls), f"long polls across the restart: {polls}"
    assert burst == [200] * len(burst), f"requests once Redis was back: {burst}"
