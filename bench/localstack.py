"""A whole Tidal stack on this machine whose processes a benchmark can SIGKILL and start again.

Valkey runs as ``tidal up`` runs it (``python -m core.embedded``: AOF on, ``appendfsync
everysec``), so killing the server and starting the wrapper again on the same port and data
directory is a restart from its AOF. The API, dispatchers and workers are ``tidal`` commands.
Every process is in its own session; everything still running is stopped on exit.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import redis

from bench.realstack import Children, descendants, http_up, wait_for
from core import keys
from core.embedded import free_port
from core.procfs import running


class LocalStack:
    def __init__(self, tmp: Path, config: str):
        """``config`` is a tidal.toml with ``{api_port}`` and ``{tmp}`` left to fill in."""
        self.tmp = tmp
        self.api_port = free_port()
        self.redis_port = free_port()
        self.url = f"http://127.0.0.1:{self.api_port}"
        self.redis_url = f"redis://127.0.0.1:{self.redis_port}"
        self.config_path = tmp / "tidal.toml"
        self.config_path.write_text(config.format(api_port=self.api_port, tmp=tmp))
        self.kids = Children(tmp, {"REDIS_URL": self.redis_url, "TIDAL_CONFIG": str(self.config_path),
                                   "TIDAL_LOG_LEVEL": "INFO"})
        self.valkey: subprocess.Popen[bytes] | None = None
        self.api: subprocess.Popen[bytes] | None = None
        self.dispatchers: list[subprocess.Popen[bytes]] = []
        self.workers: list[subprocess.Popen[bytes]] = []
        self.killed: set[int] = set()  # pids this stack's caller killed on purpose
        # Any: redis-py's stubs type every reply as bytes | str whatever decode_responses says.
        self.redis: Any = redis.Redis.from_url(self.redis_url, decode_responses=True, socket_timeout=5)

    # --- starting ---------------------------------------------------------------------------

    def start_valkey(self) -> None:
        self.valkey = self.kids.spawn(["-m", "core.embedded", "--data-dir", str(self.tmp / "valkey"),
                                       "--port", str(self.redis_port)], "valkey")
        wait_for(self.redis_answers, 30, "Valkey")

    def start_api(self, wait: bool = True) -> None:
        self.api = self.kids.spawn(["-m", "launcher.cli", "api"], "api")
        if wait:
            wait_for(lambda: http_up(f"{self.url}/healthz"), 60, "the API")

    def start_dispatcher(self) -> subprocess.Popen[bytes]:
        proc = self.kids.spawn(["-m", "launcher.cli", "dispatcher"], "dispatcher")
        self.dispatchers.append(proc)
        return proc

    def start_worker(self, model: str, wait: bool = True) -> subprocess.Popen[bytes]:
        proc = self.kids.spawn(["-m", "launcher.cli", "worker", "--model", model], f"worker-{model}")
        self.workers.append(proc)
        if wait:
            wait_for(lambda: self.worker_id(proc.pid) is not None, 60, f"a {model} worker")
        return proc

    # --- killing ----------------------------------------------------------------------------

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        self.killed.add(proc.pid)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    def valkey_server_pid(self) -> int:
        assert self.valkey is not None
        for pid, _ in descendants(self.valkey.pid):
            with contextlib.suppress(OSError):
                if "valkey-server" in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"):
                    return pid
        raise LookupError("no valkey-server under the wrapper")

    def kill_valkey(self) -> None:
        """SIGKILL the server itself (not its wrapper), as a crash would, and wait for the wrapper to notice."""
        assert self.valkey is not None
        pid = self.valkey_server_pid()
        self.killed.update({pid, self.valkey.pid})
        os.kill(pid, signal.SIGKILL)
        self.valkey.wait(timeout=10)

    # --- looking ----------------------------------------------------------------------------

    def redis_answers(self) -> bool:
        try:
            return bool(self.redis.ping())
        except redis.RedisError:
            return False

    def worker_id(self, pid: int) -> str | None:
        try:
            for wid in self.redis.smembers(keys.WORKERS):
                if self.redis.hget(keys.worker_info(wid), "pid") == str(pid):
                    return str(wid)
        except redis.RedisError:
            return None
        return None

    def unexpected_exits(self) -> list[str]:
        """Processes that ended although nobody killed them."""
        procs = [p for p in (self.valkey, self.api, *self.dispatchers, *self.workers) if p is not None]
        return [" ".join(map(str, p.args[1:4])) + f" (pid {p.pid}, status {p.returncode})"  # type: ignore[index]
                for p in procs if p.poll() is not None and p.pid not in self.killed]

    def pid_alive(self, pid: int) -> bool:
        return running(pid)

    def rss_kb(self, pid: int) -> int | None:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        except OSError:
            return None
        return None

    def stop(self) -> None:
        self.kids.stop()
        self.redis.close()


@contextlib.contextmanager
def local_stack(config: str) -> Iterator[LocalStack]:
    with tempfile.TemporaryDirectory(prefix="tidal-bench-") as tmp:
        stack = LocalStack(Path(tmp), config)
        try:
            yield stack
        except BaseException:
            print(stack.kids.tail(3000))
            raise
        finally:
            stack.stop()


def healthz(url: str, timeout_s: float = 1.0) -> int | None:
    """The API's health status, or None when nothing answers."""
    try:
        return httpx.get(f"{url}/healthz", timeout=timeout_s).status_code
    except httpx.TransportError:
        return None


def monotonic_to_wall(t_mono: float) -> float:
    return time.time() - (time.monotonic() - t_mono)
