"""``tidal up``: the whole stack on this machine, as child processes with prefixed logs.

A child that exits is restarted, soon after a one-off crash and ever later while it keeps
crashing (``launcher.restarts``). Ctrl-C (or SIGTERM) drains workers (each running job may finish,
up to its timeout; a second Ctrl-C stops them at once), stops every child and the embedded
Redis, and leaves nothing running.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from core.embedded import free_port, wait_until_up
from core.errors import StoreUnavailable
from core.jobs import JobState
from core.settings import Settings
from launcher.models import opened, publish
from launcher.restarts import RestartPolicy

log = logging.getLogger("tidal.up")

# How long a child that runs no jobs (Redis, API, dispatcher, autoscaler) gets to stop.
_STOP_GRACE_S = 15.0
# Draining workers get until their longest running job's timeout, plus the handler's grace
# and this long to store the result and deregister.
_DRAIN_MARGIN_S = 5.0
AUTOSCALER_ORDER = 0
WORKER_ORDER = 1


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
    last_line: str = ""
    crashes: int = 0  # exits in a row, each soon after its start
    restart_at: float | None = None  # set while waiting to restart an exited child


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"signal {signal.Signals(-returncode).name}"
        except ValueError:
            return f"signal {-returncode}"
    return f"status {returncode}"


class Supervisor:
    def __init__(self, env: dict[str, str], policy: RestartPolicy | None = None):
        self.env = env
        self.policy = policy or RestartPolicy()
        self.children: list[Child] = []
        self.stopping = threading.Event()
        # A second Ctrl-C: stop what is left now, running jobs included.
        self.force = threading.Event()
        self.print_lock = threading.Lock()
        self._signal_lock = threading.Lock()

    def request_stop(self) -> None:
        """The first stop signal stops the stack; a second one also stops the running jobs at once."""
        with self._signal_lock:
            if self.stopping.is_set() and not self.force.is_set():
                log.warning("second stop signal: stopping running jobs now; they run again on the next start")
                self.force.set()
            self.stopping.set()

    def add(self, name: str, args: list[str], order: int, module: str = "launcher.cli") -> Child:
        child = Child(name, [sys.executable, "-m", module, *args], order)
        self.children.append(child)
        return child

    def spawn(self, c: Child) -> None:
        # Own session: a terminal's Ctrl-C reaches only us, and we stop children in order.
        c.proc = subprocess.Popen(c.argv, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  start_new_session=True)
        c.started = time.monotonic()
        c.restart_at = None
        c.pump = threading.Thread(target=self._pump, args=(c, c.proc), daemon=True)
        c.pump.start()

    def _pump(self, c: Child, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode(errors="replace").rstrip()
            if line:
                c.last_line = line
            with self.print_lock:
                print(f"[{c.name}] {line}", flush=True)

    def start(self) -> None:
        for c in self.children:
            if c.proc is None:
                self.spawn(c)

    def watch(self) -> None:
        while not self.stopping.wait(0.1):
            for c in self.children:
                if c.proc is not None and c.proc.poll() is not None:
                    self._restart(c)

    def _restart(self, c: Child) -> None:
        assert c.proc is not None
        now = time.monotonic()
        if c.restart_at is None:
            # Whatever it left in its session (the Valkey server under its wrapper) goes too, so
            # the new one finds its port free.
            _kill_group(c.proc.pid)
            if c.pump is not None:
                c.pump.join(timeout=1)  # its last words, for the log line
            ran_s = now - c.started
            delay, c.crashes = self.policy.after_exit(c.crashes, ran_s)
            c.restart_at = now + delay
            again = f", {c.crashes} exits in a row" if c.crashes > 1 else ""
            last = f"; its last output: {c.last_line!r}" if c.last_line else ""
            log.warning("%s exited with %s after %.1fs%s; restarting in %.3gs%s", c.name,
                        describe_exit(c.proc.returncode), ran_s, last, delay, again)
        elif now >= c.restart_at:
            c.last_line = ""
            self.spawn(c)

    def stop(self, bound_s: Callable[[int], float], after_group: Callable[[int], None] = lambda order: None
             ) -> None:
        """Stop children group by group: SIGTERM, then SIGKILL past ``bound_s(order)`` (or, for workers,
        on a second Ctrl-C: the others stop in a moment anyway, and Redis should stop cleanly)."""
        self.stopping.set()
        for order in sorted({c.order for c in self.children}):
            group = [c for c in self.children if c.order == order and c.proc and c.proc.poll() is None]
            for c in group:
                assert c.proc is not None
                c.proc.send_signal(signal.SIGTERM)
            if group:
                procs = [c.proc for c in group if c.proc is not None]
                wait_or_force(lambda procs=procs: all(p.poll() is not None for p in procs),  # type: ignore[misc]
                              bound_s(order), self.force if order == WORKER_ORDER else threading.Event(),
                              ", ".join(c.name for c in group))
            for c in group:
                assert c.proc is not None
                if c.proc.poll() is None:
                    log.warning("%s did not stop in time; killing it", c.name)
                    _kill_group(c.proc.pid)
                    c.proc.wait()
            after_group(order)
        for c in self.children:
            if c.pump is not None:
                c.pump.join(timeout=2)


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def wait_or_force(done: Callable[[], bool], bound_s: float, force: threading.Event, what: str) -> bool:
    """Wait until ``done()``, ``bound_s`` has passed or ``force`` is set; saying every 10 s what it waits for."""
    t0 = time.monotonic()
    next_note = t0 + 10.0
    while not done():
        now = time.monotonic()
        if now - t0 >= bound_s or force.wait(0.05):
            return False
        if now >= next_note:
            log.info("still waiting for %s (up to %.0fs more); Ctrl-C again to stop now", what, bound_s - (now - t0))
            next_note = now + 10.0
    return True


def drain_bound_s(redis_url: str, settings: Settings) -> float:
    """How long draining workers on this host may take: until the running job with the most time
    left reaches its timeout, plus the handler's grace and a margin. Without Redis, a fixed grace."""

    async def longest_left_s() -> float:
        async with opened(redis_url) as store:
            snap = await store.snapshot([])
            now, left = time.time(), 0.0
            for w in snap.workers:
                if w.host != socket.gethostname():
                    continue
                for job_id in await store.active_jobs(w.id):
                    job = await store.get(job_id)
                    if job is not None and job.state == JobState.RUNNING and job.started_at_s is not None:
                        left = max(left, job.started_at_s + job.timeout_s - now)
            return left

    try:
        left = asyncio.run(longest_left_s())
    except StoreUnavailable as exc:
        log.warning("cannot read the running jobs (%s); workers get %.0fs to finish", exc, _STOP_GRACE_S)
        return _STOP_GRACE_S
    return left + settings.worker.timeout_grace_s + _DRAIN_MARGIN_S


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


def stop_local_workers(settings: Settings, bound_s: float, force: threading.Event) -> None:
    """Workers the autoscaler started run in their own sessions; stop them (they drain) once it is gone."""
    if settings.autoscaler.enabled and settings.autoscaler.provider == "local":
        from autoscaler.local_provider import LocalProvider

        # Its grace is the drain bound, so listing the instances does not kill a draining one early.
        provider = LocalProvider(settings.autoscaler.instances_dir, stop_grace_s=bound_s)
        running = provider.list_instances()
        if not running:
            return
        provider.terminate([i.id for i in running])
        wait_or_force(lambda: not provider.list_instances(), bound_s, force, f"{len(running)} autoscaled worker(s)")
        provider.stop_all(0)  # SIGKILL whatever is left


def announce_when_up(settings: Settings, sup: Supervisor) -> None:
    """Say "Tidal is up" once the API answers /healthz (so Redis answers too), not before."""
    host = settings.api.host if settings.api.host not in ("", "0.0.0.0", "::") else "127.0.0.1"
    url = f"http://{f'[{host}]' if ':' in host else host}:{settings.api.port}/healthz"
    while not sup.stopping.wait(0.1):
        try:
            with urllib.request.urlopen(url, timeout=1.0) as answer:
                if answer.status != 200:
                    continue
        except OSError:  # refused, or 503 while Redis does not answer
            continue
        log.info("Tidal is up: API on http://%s:%d (docs at /docs). Ctrl-C stops everything.",
                 settings.api.host, settings.api.port)
        return


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
                sup.add(f"worker {model}#{i + 1}", ["worker", "--model", model, *pin], order=WORKER_ORDER)
                started += 1

    def on_signal(signum: int, frame: object) -> None:
        # From another thread: this (main) thread may hold an Event's lock inside an Event.wait()
        # (watch(), or a wait while stopping) when the signal arrives, and setting it here would
        # then deadlock.
        threading.Thread(target=sup.request_stop, daemon=True).start()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    sup.start()
    follow_thread = threading.Thread(target=follower.run, daemon=True) if follower else None
    if follow_thread:
        follow_thread.start()
    threading.Thread(target=announce_when_up, args=(settings, sup), daemon=True).start()
    try:
        sup.watch()
    finally:
        log.info("stopping: workers finish their running jobs first (up to each job's timeout_s); "
                 "Ctrl-C again to stop at once")

        def bound_s(order: int) -> float:
            return drain_bound_s(redis_url, settings) if order == WORKER_ORDER else _STOP_GRACE_S

        def after_group(order: int) -> None:
            if order == AUTOSCALER_ORDER:
                stop_local_workers(settings, drain_bound_s(redis_url, settings), sup.force)

        sup.stop(bound_s, after_group)
        if follow_thread:
            follow_thread.join(timeout=2)
        log.info("stopped")
    return 0
