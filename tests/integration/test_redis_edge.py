"""Redis at the edge: URLs with ACL users, TLS URLs, the embedded server's durability, rq's own tools."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import redis
import redis.asyncio.connection

from core.embedded import start_embedded
from core.errors import StoreUnavailable
from core.jobs import NewJob
from core.store import Store, connect


def test_acl_user_in_the_url_works_and_a_wrong_password_is_a_clear_error(redis_url: str, r: redis.Redis) -> None:
    user = f"tidal-{uuid.uuid4().hex[:6]}"
    r.acl_setuser(user, enabled=True, passwords=["+pw-correct"], keys=["*"], channels=["*"], commands=["+@all"])
    host_port = redis_url.split("://", 1)[1].split("/", 1)[0].split("@")[-1]
    try:
        async def ping(url: str) -> bool:
            store = Store.from_url(url)
            try:
                return await store.ping()
            finally:
                await store.close()

        assert asyncio.run(ping(f"redis://{user}:pw-correct@{host_port}/0"))
        with pytest.raises(StoreUnavailable, match="redis"):
            asyncio.run(ping(f"redis://{user}:pw-wrong@{host_port}/0"))
    finally:
        r.acl_deluser(user)


def test_rediss_url_uses_tls() -> None:
    client = connect("rediss://user:pw@cache.internal:6380/2")
    pool = client.connection_pool
    assert issubclass(pool.connection_class, redis.asyncio.connection.SSLConnection)
    assert pool.connection_kwargs["username"] == "user" and pool.connection_kwargs["db"] == 2


def test_embedded_server_is_durable_and_never_evicts(tmp_path: Path) -> None:
    server = start_embedded(tmp_path / "data")
    try:
        c = redis.Redis.from_url(server.connection_url, decode_responses=True)
        assert c.config_get("appendonly")["appendonly"] == "yes"
        assert c.config_get("appendfsync")["appendfsync"] == "everysec"
        assert c.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"
        c.set("survives", "a restart")
        c.close()
    finally:
        server.stop()
    again = start_embedded(tmp_path / "data")
    try:
        c = redis.Redis.from_url(again.connection_url, decode_responses=True)
        assert c.get("survives") == "a restart"
        c.close()
    finally:
        again.stop()


def test_rq_info_lists_our_queues(redis_url: str, r: redis.Redis) -> None:
    async def submit() -> None:
        store = Store.from_url(redis_url)
        try:
            await store.submit(NewJob(str(uuid.uuid4()), "echo", "1", "1"), max_queue_len=10, idempotency_key=None,
                               now=0.0)
        finally:
            await store.close()

    asyncio.run(submit())
    rq = shutil.which("rq", path=str(Path(sys.executable).parent))
    assert rq is not None
    out = subprocess.run([rq, "info", "--url", redis_url, "--only-queues"], capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 0, out.stderr
    assert "echo" in out.stdout and "1" in out.stdout
