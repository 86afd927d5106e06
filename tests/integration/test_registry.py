"""The model registry in a real Redis: versioned publishing, reading back, boot errors, the CLI."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import redis

from core import keys, registry
from core.settings import Settings
from core.store import Store
from tests.procs import ROOT


def settings(version: str = "1", package: str | None = None) -> Settings:
    return Settings.model_validate({
        "worker": {"heartbeat_interval_s": 0.5, "heartbeat_ttl_s": 2.0},
        "api": {"result_ttl_s": 60},
        "models": {
            "echo": {"handler": "worker.handlers.echo:Echo", "version": version, "package": package},
            "sleep": {"handler": "worker.handlers.sleep:Sleep", "options": {"ms": 5}},
        },
    })


def test_publishing_bumps_a_revision_only_when_the_spec_changes(redis_url: str, r: redis.Redis) -> None:
    async def go() -> None:
        store = Store.from_url(redis_url)
        try:
            first = await store.publish_models(registry.specs(settings()), source="test", now=1.0)
            assert [(p.name, p.revision, p.changed) for p in first] == [("echo", 1, True), ("sleep", 1, True)]
            again = await store.publish_models(registry.specs(settings()), source="test", now=2.0)
            assert [(p.revision, p.changed) for p in again] == [(1, False), (1, False)]
            changed = await store.publish_models(registry.specs(settings(package="mymodels==1.2")), source="t2",
                                                 now=3.0)
            assert [(p.name, p.revision, p.changed) for p in changed] == [("echo", 2, True), ("sleep", 1, False)]

            entry = await store.registry_entry("echo")
            assert entry is not None
            assert (entry.revision, entry.published_at, entry.source) == (2, 3.0, "t2")
            assert entry.spec.model.package == "mymodels==1.2"
            assert entry.spec.worker.heartbeat_ttl_s == 2.0 and entry.spec.result_ttl_s == 60
            assert entry.digest == registry.WorkerSpec.from_settings(settings(package="mymodels==1.2"), "echo").digest()
            assert await store.registered_models() == ["echo", "sleep"]
            digests = await store.model_digests(["echo", "nope"])
            assert digests == {"echo": entry.digest, "nope": None}
            assert await store.registry_entry("nope") is None
        finally:
            await store.close()

    asyncio.run(go())


def test_an_unreadable_entry_counts_as_not_registered(redis_url: str, r: redis.Redis) -> None:
    r.hset(keys.registry_entry("odd"), mapping={"spec": "{not json", "digest": "x", "revision": "1"})

    async def go() -> registry.Entry | None:
        store = Store.from_url(redis_url)
        try:
            return await store.registry_entry("odd")
        finally:
            await store.close()

    assert asyncio.run(go()) is None


def test_boot_errors_are_kept_per_instance_and_expire(redis_url: str, r: redis.Redis) -> None:
    async def go() -> dict[str, dict[str, registry.BootError]]:
        store = Store.from_url(redis_url)
        try:
            await store.report_boot_error("echo", "i-1", registry.BootError("unknown model 'echo'", 5.0, final=True))
            await store.report_boot_error("echo", "i-2", registry.BootError("load() failed", 6.0, final=False))
            r.hset(keys.boot_errors("sleep"), "i-3", "{not json")  # another version's: skipped
            return await store.boot_errors(["echo", "sleep"])
        finally:
            await store.close()

    assert asyncio.run(go()) == {
        "echo": {"i-1": registry.BootError("unknown model 'echo'", 5.0, True),
                 "i-2": registry.BootError("load() failed", 6.0, False)},
        "sleep": {},
    }
    assert 0 < r.ttl(keys.boot_errors("echo")) <= registry.BOOT_ERRORS_TTL_S


def tidal(*args: str, redis_url: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "REDIS_URL": redis_url, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "launcher.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=60, check=False)


def test_models_push_and_list(redis_url: str, r: redis.Redis, tmp_path: Path) -> None:
    (tmp_path / "tidal.toml").write_text(
        '[models.echo]\nhandler = "worker.handlers.echo:Echo"\npackage = "mymodels==1.2"\n'
    )
    empty = tidal("models", "list", redis_url=redis_url, cwd=tmp_path)
    assert empty.returncode == 0 and "no models registered" in empty.stdout
    pushed = tidal("models", "push", redis_url=redis_url, cwd=tmp_path)
    assert pushed.returncode == 0, pushed.stderr
    assert pushed.stdout == "echo: revision 1 (published)\n"
    assert tidal("models", "push", redis_url=redis_url, cwd=tmp_path).stdout == "echo: revision 1 (unchanged)\n"
    listed = tidal("models", "list", redis_url=redis_url, cwd=tmp_path)
    assert listed.stdout.startswith("echo: revision 1 digest ")
    assert "handler worker.handlers.echo:Echo package mymodels==1.2" in listed.stdout

    bare = tmp_path / "bare"
    bare.mkdir()
    nothing = tidal("models", "push", redis_url=redis_url, cwd=bare)
    assert nothing.returncode == 2 and "no models to push" in nothing.stderr
