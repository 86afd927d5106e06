"""What the end-to-end benchmarks share: a Redis server, command counts, child processes, free ports."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import redis

from bench.common import REPO_ROOT
from core.embedded import free_port, start_embedded
from core.procfs import running, start_time, stat_fields

# Commands the benchmark itself sends to read the counters; never part of a job's cost.
_OWN_COMMANDS = frozenset({"info", "client|setinfo", "ping", "config|get", "hello"})


def add_redis_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--redis-url", default=None,
                   help="use this server (it should be otherwise idle: command counts are server-wide); "
                        "default: an embedded Valkey on a free port")


@contextlib.contextmanager
def redis_server(url: str | None) -> Iterator[str]:
    """The given URL, or an embedded Valkey (no AOF) that is stopped on exit."""
    if url:
        yield url
        return
    server = start_embedded(data_dir=None, port=free_port(), durable=False)
    try:
        yield server.connection_url
    finally:
        server.stop()


def command_calls(client: redis.Redis) -> dict[str, int]:
    """Server-wide calls per command (``INFO commandstats``); commands run inside Lua count too."""
    stats: dict[str, Any] = client.info("commandstats")
    return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()}


def calls_between(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    out = {k: v - before.get(k, 0) for k, v in after.items() if k not in _OWN_COMMANDS}
    return dict(sorted(((k, v) for k, v in out.items() if v > 0), key=lambda kv: -kv[1]))


def per_job(calls: dict[str, int], jobs: int) -> dict[str, Any]:
    """Total commands per job, script calls per job, and the per-command breakdown."""
    total = sum(calls.values())
    scripts = sum(v for k, v in calls.items() if k in ("evalsha", "eval", "fcall"))
    return {
        "commands_per_job": total / jobs if jobs else None,
        "script_calls_per_job": scripts / jobs if jobs else None,
        "by_command_per_job": {k: round(v / jobs, 3) for k, v in calls.items()} if jobs else {},
    }


class Children:
    """Child processes in their own sessions with logs in one directory; all stopped by :meth:`stop`."""

    def __init__(self, log_dir: Path, env: dict[str, str] | None = None):
        self.log_dir = log_dir
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.procs: list[subprocess.Popen[bytes]] = []

    def spawn(self, argv: list[str], name: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        with open(self.log_dir / f"{name}-{len(self.procs)}.log", "wb") as log:
            proc = subprocess.Popen([sys.executable, *argv], cwd=REPO_ROOT, env={**self.env, **(env or {})},
                                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(proc)
        return proc

    def stop(self, procs: list[subprocess.Popen[bytes]] | None = None, sig: int = signal.SIGTERM,
             timeout_s: float = 15.0) -> None:
        chosen = self.procs if procs is None else procs
        for p in chosen:
            if p.poll() is None:
                p.send_signal(sig)
        deadline = time.monotonic() + timeout_s
        for p in chosen:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        self.procs = [p for p in self.procs if p not in chosen]

    def tail(self, chars: int = 2000) -> str:
        return "\n".join(f"== {f.name}\n{f.read_text(errors='replace')[-chars:]}"
                         for f in sorted(self.log_dir.glob("*.log")))


@contextlib.contextmanager
def children(env: dict[str, str] | None = None) -> Iterator[Children]:
    with tempfile.TemporaryDirectory(prefix="tidal-bench-") as tmp:
        kids = Children(Path(tmp), env)
        try:
            yield kids
        except BaseException:
            print(kids.tail(), file=sys.stderr)
            raise
        finally:
            kids.stop()


def wait_for(predicate: Callable[[], bool], timeout_s: float, what: str, poll_s: float = 0.02) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:g}s waiting for {what}")
        time.sleep(poll_s)


def http_up(url: str) -> bool:
    try:
        return httpx.get(url, timeout=0.5).status_code == 200
    except httpx.TransportError:
        return False


def descendants(root: int) -> set[tuple[int, str]]:
    """(pid, kernel start time) of every live process under ``root``; the start time tells a reused pid apart."""
    parents: dict[int, list[tuple[int, str]]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := stat_fields(int(entry.name))) is not None:
            parents.setdefault(int(fields[1]), []).append((int(entry.name), fields[19]))
    out: set[tuple[int, str]] = set()
    todo = [root]
    while todo:
        for child in parents.get(todo.pop(), []):
            out.add(child)
            todo.append(child[0])
    return out


def still_running(procs: set[tuple[int, str]]) -> set[tuple[int, str]]:
    return {(pid, start) for pid, start in procs if running(pid) and start_time(pid) == start}
