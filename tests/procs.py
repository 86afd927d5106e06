"""Start Tidal's real processes (API under uvicorn, dispatchers, workers) for a test."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import redis

from core import keys

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate: Callable[[], bool], timeout_s: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.05)


# The API on {port}, with heartbeats and dispatcher sweeps fast enough for tests.
FAST = """
[api]
port = {port}
[worker]
heartbeat_interval_s = 0.2
heartbeat_ttl_s = 1.0
[dispatcher]
tick_s = 0.2
"""

CONFIG = """
[api]
port = {port}
max_body_bytes = 4096
[worker]
heartbeat_interval_s = 0.2
heartbeat_ttl_s = 1.0
timeout_grace_s = 1.0
[dispatcher]
tick_s = 0.2
[models.echo]
handler = "worker.handlers.echo:Echo"
[models.sleep]
handler = "worker.handlers.sleep:Sleep"
options = {{ ms = 50 }}
max_attempts = 3
[models.idle]
handler = "worker.handlers.echo:Echo"
max_queue_len = 3
[models.boom]
handler = "tests.handlers:Boom"
"""


class Stack:
    def __init__(self, redis_url: str, tmp: Path, config: str = CONFIG):
        self.redis_url = redis_url
        self.tmp = tmp
        self.port = free_port()
        self.config = tmp / "tidal.toml"
        self.config.write_text(config.format(port=self.port))
        self.env = dict(os.environ, REDIS_URL=redis_url, TIDAL_CONFIG=str(self.config), PYTHONUNBUFFERED="1",
                        TIDAL_LOG_LEVEL="INFO")
        self.procs: list[subprocess.Popen[bytes]] = []
        self.url = f"http://127.0.0.1:{self.port}"
        self.redis = redis.Redis.from_url(redis_url, decode_responses=True)

    def spawn(self, *args: str, name: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        with open(self.tmp / f"{name}-{len(self.procs)}.log", "wb") as log:
            proc = subprocess.Popen([sys.executable, "-m", "launcher.cli", *args], cwd=ROOT,
                                    env={**self.env, **(env or {})}, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        self.procs.append(proc)
        return proc

    def api(self) -> subprocess.Popen[bytes]:
        proc = self.spawn("api", name="api")

        def up() -> bool:
            try:
                return httpx.get(f"{self.url}/healthz", timeout=0.5).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(up, what="the API")
        return proc

    def dispatcher(self) -> subprocess.Popen[bytes]:
        return self.spawn("dispatcher", name="dispatcher")

    def worker(self, model: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        before = self.live_workers(model)
        proc = self.spawn("worker", "--model", model, *args, name=f"worker-{model}", env=env)
        wait_for(lambda: len(self.live_workers(model)) > len(before), what=f"a {model} worker")
        return proc

    def live_workers(self, model: str) -> set[str]:
        ids = self.redis.smembers(keys.WORKERS)
        return {w for w in ids if self.redis.hget(keys.worker_info(w), "model") == model
                and self.redis.exists(keys.worker_alive(w))}

    def worker_id_of(self, proc: subprocess.Popen[bytes]) -> str:
        for w in self.redis.smembers(keys.WORKERS):
            if self.redis.hget(keys.worker_info(w), "pid") == str(proc.pid):
                return w
        raise LookupError(f"no worker registered for pid {proc.pid}")

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        self.redis.close()

    def logs(self) -> str:
        return "\n".join(f"== {f.name}\n{f.read_text()[-3000:]}" for f in sorted(self.tmp.glob("*.log")))


class Valkey:
    """A Valkey of a test's own, run as ``tidal up`` runs it (``python -m core.embedded``: AOF,
    ``appendfsync everysec``), that can be killed with SIGKILL and restarted on the same port."""

    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        with open(self.data_dir.parent / f"valkey-{self.port}.log", "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "core.embedded", "--data-dir", str(self.data_dir), "--port", str(self.port)],
                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_for(self.answers, what="valkey")

    def answers(self) -> bool:
        client = redis.Redis.from_url(self.url)
        try:
            return bool(client.ping())
        except redis.ConnectionError:
            return False
        finally:
            client.close()

    def pubsub_channels(self) -> set[str]:
        client = redis.Redis.from_url(self.url, decode_responses=True)
        try:
            return set(client.pubsub_channels())
        finally:
            client.close()

    def kill(self) -> None:
        """SIGKILL the server (and the launcher around it), as a crash would."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def restart(self) -> None:
        self.kill()
        self.start()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.kill()


@contextlib.contextmanager
def api_and_dispatcher(redis_url: str, tmp: Path, config: str) -> Iterator[Stack]:
    """A flushed database, the API (which publishes the config's models) and one dispatcher."""
    redis.Redis.from_url(redis_url).flushdb()
    s = Stack(redis_url, tmp, config)
    try:
        s.api()
        s.dispatcher()
        yield s
    finally:
        s.stop()


def start_up(config: Path, log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """`tidal --config <config> up`, its output going to ``log`` (a pipe nobody reads would fill up)."""
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, "-m", "launcher.cli", "--config", str(config), "up"], cwd=ROOT,
                                env=env, stdout=out, stderr=subprocess.STDOUT)
