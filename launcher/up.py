"""``tidal up``: the whole stack on this machine, as child processes with prefixed logs.

Ctrl-C (or SIGTERM) drains workers, stops every child and the embedded Redis, and leaves
nothing running.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from core.embedded import free_port, wait_until_up
from core.settings import Settings
from launcher.models import opened, publish

log = logging.getLogger("tidal.up")

_RESTART_BACKOFF_S = 2.0
_STOP_GRACE_S = 15.0
AUTOSCALER_ORDER = 0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-workers", action="store_true", help="start no local workers")


@dataclass
class Child:
    name: str
    argv: list[str]
    order: int  # lower stops first
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    pump: threading.Thread | None = field(default=None, repr=False)


class Supervisor:
    def __init__(self, env: dict[str, str]):
        self.env = env
        self.children: list[Child] = []
        self.stopping = threading.Event()
        self.print_lock = threading.Lock()

    def add(self, name: str, args: list[str], order: int, module: str = "launcher.cli") -> Child:
        child = Child(name, [sys.executable, "-m", module, *args], order)
        self.children.append(child)
        return child

    def spawn(self, c: Child) -> None:
        # Own session: a terminal's Ctrl-C reaches only us, and we stop children in order.
        c.proc = subprocess.Popen(c.argv, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  start_new_session=True)
        c.started = time.monotonic()
        c.pump = threading.Thread(target=self._pump, args=(c, c.proc), daemon=True)
        c.pump.start()

    def _pump(self, c: Child, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode(errors="replace").rstrip()
            with self.print_lock:
                print(f"[{c.name}] {line}", flush=True)

    def start(self) -> None:
        for c in self.children:
            if c.proc is None:
                self.spawn(c)

    def watch(self) -> None:
        while not self.stopping.wait(0.5):
            for c in self.children:
                if c.proc is not None and c.proc.poll() is not None:
                    if time.monotonic() - c.started < _RESTART_BACKOFF_S:
                        continue
                    log.warning("%s exited with %s; restarting", c.name, c.proc.returncode)
                    self.spawn(c)

    def stop(self, after_group: Callable[[int], None] = lambda order: None) -> None:
        self.stopping.set()
        for order in sorted({c.order for c in self.children}):
            group = [c for c in self.children if c.order == order and c.proc and c.proc.poll() is None]
            for c in group:
                assert c.proc is not None
                c.proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + _STOP_GRACE_S
            for c in group:
                assert c.proc is not None
                try:
                    c.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    log.warning("%s did not stop in %.0fs; killing it", c.name, _STOP_GRACE_S)
                    os.killpg(c.proc.pid, signal.SIGKILL)
                    c.proc.wait()
            after_group(order)
        for c in self.children:
            if c.pump is not None:
                c.pump.join(timeout=2)


class LogFollower:
    """Prints the logs of workers the autoscaler starts (they write to files) with a prefix."""

    def __init__(self, directory: Path, sup: Supervisor):
        self.directory = directory
        self.sup = sup
        self.offsets: dict[Path, int] = {}

    def run(self) -> None:
        while not self.sup.stopping.wait(0.25):
            self.poll()
        self.poll()

    def poll(self) -> None:
        for path in sorted(self.directory.glob("*.log")):
            start = self.offsets.get(path, 0)
            try:
                with path.open("rb") as f:
                    f.seek(start)
                    chunk = f.read()
            except OSError:
                continue
            complete = chunk[: chunk.rfind(b"\n") + 1]
            self.offsets[path] = start + len(complete)
            for line in complete.decode(errors="replace").splitlines():
                with self.sup.print_lock:
                    print(f"[worker {path.stem}] {line}", flush=True)


def stop_local_workers(settings: Settings) -> None:
    """Workers the autoscaler started run in their own sessions; stop them (they drain) once it is gone."""
    if settings.autoscaler.enabled and settings.autoscaler.provider == "local":
        from autoscaler.local_provider import LocalProvider

        LocalProvider(settings.autoscaler.instances_dir).stop_all(settings.autoscaler.stop_grace_s)


def _publish(settings: Settings, redis_url: str) -> None:
    """The models to the registry before any worker starts (the API does it too, once it is up)."""

    async def publish_all() -> None:
        async with opened(redis_url) as store:
            for p in await publish(store, settings, source="tidal up"):
                log.info("model %s: registry revision %d%s", p.name, p.revision, "" if p.changed else " (unchanged)")

    asyncio.run(publish_all())


def run(args: argparse.Namespace, settings: Settings, redis_url: str) -> int:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if args.config:
        env["TIDAL_CONFIG"] = str(Path(args.config).resolve())
    sup = Supervisor(env)
    if not redis_url:
        # Its own child (and session), stopped last, so workers can still drain into it.
        port = settings.redis.port or free_port()
        valkey = sup.add("valkey", ["--data-dir", str(settings.redis.data_dir.resolve()), "--port", str(port)],
                         order=9, module="core.embedded")
        sup.spawn(valkey)
        redis_url = f"redis://127.0.0.1:{port}"
        wait_until_up(redis_url)
    env["REDIS_URL"] = redis_url
    _publish(settings, redis_url)
    sup.add("api", ["api"], order=3)
    sup.add("dispatcher", ["dispatcher"], order=2)
    follower = None
    if settings.autoscaler.enabled:
        sup.add("autoscaler", ["autoscale", "--provider", "local"], order=AUTOSCALER_ORDER)
        settings.autoscaler.instances_dir.mkdir(parents=True, exist_ok=True)
        follower = LogFollower(settings.autoscaler.instances_dir, sup)
        # Logs from earlier runs are history, not news.
        for old in settings.autoscaler.instances_dir.glob("*.log"):
            follower.offsets[old] = old.stat().st_size
    elif not args.no_workers:
        from core.gpus import choose

        # Pinned like the local provider's workers: each to the next GPU, round robin.
        gpus = choose(settings.autoscaler.local_gpus)
        started = 0
        for model, cfg in settings.models.items():
            for i in range(cfg.local_workers):
                pin = ["--gpu", gpus[started % len(gpus)]] if gpus else ["--gpus", "none"]
                sup.add(f"worker {model}#{i + 1}", ["worker", "--model", model, *pin], order=1)
                started += 1

    def on_signal(signum: int, frame: object) -> None:
        # From another thread: this (main) thread may hold the Event's lock inside watch()'s
        # Event.wait() when the signal arrives, and setting it here would then deadlock.
        threading.Thread(target=sup.stopping.set, daemon=True).start()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    sup.start()
    follow_thread = threading.Thread(target=follower.run, daemon=True) if follower else None
    if follow_thread:
        follow_thread.start()
    log.info("Tidal is up: API on http://%s:%d (docs at /docs). Ctrl-C stops everything.",
             settings.api.host, settings.api.port)
    try:
        sup.watch()
    finally:
        log.info("stopping...")
        sup.stop(after_group=lambda order: stop_local_workers(settings) if order == AUTOSCALER_ORDER else None)
        if follow_thread:
            follow_thread.join(timeout=2)
        log.info("stopped")
    return 0
