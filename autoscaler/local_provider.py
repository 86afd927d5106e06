"""A provider whose instances are ``tidal worker`` processes on this machine.

Each instance is a process in its own session (so signals reach the worker and anything it
started, and never the autoscaler), recorded in ``<records_dir>/<id>.json``. The records
are the provider's memory: a later ``tidal autoscale --once`` run lists, and stops, what an
earlier one started. An instance is listed while its process is alive.

Where the machine has GPUs, each worker is pinned to one with ``CUDA_VISIBLE_DEVICES`` and no
two live workers share one; with every GPU taken, a launch fails for capacity.

Stopping sends SIGTERM (the worker finishes its jobs and deregisters) and, if the process is
still there ``stop_grace_s`` later, SIGKILL; the grace is enforced by later calls rather
than by blocking, so one slow worker never stalls an autoscaler tick.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from autoscaler.provider import Instance, InstanceState
from core.errors import CapacityError, ProviderError
from core.procfs import start_time, stat_fields

Command = Callable[[str], list[str]]


def worker_command(pool: str) -> list[str]:
    return [sys.executable, "-m", "launcher.cli", "worker", "--model", pool]


@dataclass(frozen=True, slots=True)
class ProcessRecord:
    id: str
    pool: str
    pid: int
    token: str
    launched_at: float
    # The kernel's start time of the process, so a recycled pid is not taken for our worker.
    proc_start: str | None
    stop_requested_at: float | None = None
    gpu: str | None = None  # CUDA_VISIBLE_DEVICES it was started with; None: not pinned


def _reap(pid: int) -> None:
    """Collect the exit status if the process is our own exited child, so it is not a zombie."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


class LocalProvider:
    name = "local"

    def __init__(
        self,
        records_dir: Path,
        *,
        command: Command = worker_command,
        env: Mapping[str, str] | None = None,
        stop_grace_s: float = 30.0,
        clock: Callable[[], float] = time.time,
        gpus: Sequence[str] = (),
    ) -> None:
        """``env`` is added to this process's environment for every worker (e.g. ``REDIS_URL``).

        ``gpus``: ``CUDA_VISIBLE_DEVICES`` values to pin workers to, one worker each; empty: no pinning.
        """
        self.records_dir = Path(records_dir)
        self.command = command
        self.env = dict(env or {})
        self.stop_grace_s = stop_grace_s
        self.clock = clock
        self.gpus = list(gpus)

    # --- records -----------------------------------------------------------------------

    def _path(self, instance_id: str) -> Path:
        return self.records_dir / f"{instance_id}.json"

    def _write(self, rec: ProcessRecord) -> None:
        tmp = self._path(rec.id).with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(rec)))
        os.replace(tmp, self._path(rec.id))

    def _records(self) -> list[ProcessRecord]:
        if not self.records_dir.is_dir():
            return []
        out = []
        for p in sorted(self.records_dir.glob("*.json")):
            try:
                out.append(ProcessRecord(**json.loads(p.read_text())))
            except (OSError, ValueError, TypeError):
                # Written by something else or half-deleted by a concurrent run: not ours to manage.
                continue
        return out

    def _alive(self, rec: ProcessRecord) -> bool:
        _reap(rec.pid)
        fields = stat_fields(rec.pid)
        if fields is None:
            try:
                os.kill(rec.pid, 0)
            except ProcessLookupError:
                return False
            except PermissionError:
                return True
            return True
        return fields[0] != "Z" and (rec.proc_start is None or fields[19] == rec.proc_start)

    def _signal(self, rec: ProcessRecord, sig: signal.Signals) -> None:
        try:
            os.killpg(rec.pid, sig)
        except ProcessLookupError:
            pass
        except PermissionError as exc:
            raise ProviderError(f"cannot signal worker process {rec.pid} of {rec.id}: {exc}") from exc

    def _instance(self, rec: ProcessRecord) -> Instance:
        state: InstanceState = "stopping" if rec.stop_requested_at is not None else "running"
        return Instance(rec.id, rec.pool, state, rec.launched_at, "process", None)

    # --- Provider ----------------------------------------------------------------------

    def list_instances(self, pool: str | None = None) -> list[Instance]:
        now = self.clock()
        out = []
        for rec in self._records():
            if not self._alive(rec):
                self._path(rec.id).unlink(missing_ok=True)
                continue
            if rec.stop_requested_at is not None and now - rec.stop_requested_at >= self.stop_grace_s:
                self._signal(rec, signal.SIGKILL)
            if pool is None or rec.pool == pool:
                out.append(self._instance(rec))
        return out

    def launch(self, pool: str, workers: int, token: str) -> list[Instance]:
        earlier = [r for r in self._records() if r.token == token]
        if earlier:
            return [self._instance(r) for r in earlier]
        gpus = self._free_gpus(workers)
        try:
            self.records_dir.mkdir(parents=True, exist_ok=True)
            return [self._instance(self._spawn(pool, token, gpu)) for gpu in gpus]
        except OSError as exc:
            raise ProviderError(f"cannot start a worker process for {pool}: {exc}") from exc

    def _free_gpus(self, count: int) -> list[str | None]:
        """A GPU no live worker holds for each of ``count`` workers; ``None`` each without GPUs."""
        if not self.gpus:
            return [None] * count
        held = {r.gpu for r in self._records() if self._alive(r)}
        free = [g for g in self.gpus if g not in held]
        if len(free) < count:
            raise CapacityError(
                f"{count} more worker(s) wanted, {len(free)} of this machine's {len(self.gpus)} GPU(s) free "
                "(one worker per GPU)",
                instance_type="process",
            )
        return list(free[:count])

    def _spawn(self, pool: str, token: str, gpu: str | None) -> ProcessRecord:
        instance_id = f"local-{secrets.token_hex(4)}"
        argv = self.command(pool)
        exe = argv[0] if os.path.isabs(argv[0]) else shutil.which(argv[0])
        if exe is None:
            raise ProviderError(f"worker command not found: {argv[0]}")
        env = {**os.environ, **self.env, "TIDAL_INSTANCE_ID": instance_id}
        if gpu is not None:
            # This process is the one worker on that GPU: it must not start one per GPU itself.
            env |= {"CUDA_VISIBLE_DEVICES": gpu, "TIDAL_GPUS": "none"}
        log_path = self.records_dir / f"{instance_id}.log"
        pid = os.posix_spawn(
            exe,
            argv,
            env,
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_OPEN, 1, str(log_path), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644),
                (os.POSIX_SPAWN_DUP2, 1, 2),
            ],
            setsid=True,
        )
        rec = ProcessRecord(instance_id, pool, pid, token, self.clock(), start_time(pid), gpu=gpu)
        self._write(rec)
        return rec

    def terminate(self, instance_ids: Sequence[str]) -> None:
        wanted = set(instance_ids)
        now = self.clock()
        for rec in self._records():
            if rec.id not in wanted or not self._alive(rec):
                continue
            self._signal(rec, signal.SIGTERM)
            if rec.stop_requested_at is None:
                self._write(replace(rec, stop_requested_at=now))

    def stop_all(self, timeout_s: float) -> None:
        """Stop every recorded process and wait up to ``timeout_s`` before killing what is left."""
        self.terminate([r.id for r in self._records()])
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and any(self._alive(r) for r in self._records()):
            time.sleep(0.05)
        for rec in self._records():
            if self._alive(rec):
                self._signal(rec, signal.SIGKILL)
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline and any(self._alive(r) for r in self._records()):
            time.sleep(0.02)
        self.list_instances()
