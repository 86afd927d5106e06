"""The worker loop: register, heartbeat, take jobs from its own queue, run them, drain on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from core.errors import StoreUnavailable
from core.fleet import WorkerRecord, WorkerState
from core.jobs import dumps_value
from core.settings import WorkerSettings
from core.store import WorkerStore
from worker.context import JobContext, run_with
from worker.exit_codes import EXIT_WEDGED
from worker.handler import Handler
from worker.tracebacks import format_error

log = logging.getLogger("tidal.worker")

T = TypeVar("T")

# How long one BLMOVE waits, so a draining worker notices within this time.
_TAKE_BLOCK_S = 1.0
# Longest pause between two tries of a start or a finish while Redis does not answer.
_RETRY_CAP_S = 1.0


@dataclass(frozen=True)
class WorkerIdentity:
    id: str
    model: str
    version: str
    weight: float
    slots: int
    host: str
    instance_id: str
    gpu: str = ""  # CUDA_VISIBLE_DEVICES of this worker; empty when not pinned

    @classmethod
    def new(cls, model: str, version: str, weight: float, slots: int, instance_id: str, gpu: str = ""
            ) -> WorkerIdentity:
        return cls(f"{model}-{uuid.uuid4().hex[:10]}", model, version, weight, slots, socket.gethostname(),
                   instance_id, gpu)

    def record(self, now: float) -> WorkerRecord:
        return WorkerRecord(self.id, self.model, self.version, self.weight, self.slots, self.host, os.getpid(),
                            self.instance_id, now, self.gpu)


class Worker:
    def __init__(
        self,
        store: WorkerStore,
        identity: WorkerIdentity,
        handler: Handler,
        settings: WorkerSettings,
        *,
        clock: Callable[[], float] = time.time,
        exit_process: Callable[[int], None] = os._exit,
    ):
        self.store = store
        self.me = identity
        self.handler = handler
        self.settings = settings
        self.clock = clock
        self._exit = exit_process
        self.running: dict[str, JobContext] = {}
        # Jobs this process has taken (from BLMOVE or adopted) and not yet finished; anything else
        # in the active list is a job Redis thinks we hold and we do not know about.
        self._held: set[str] = set()
        self._unknown: set[str] = set()
        self._adopted: asyncio.Queue[str] = asyncio.Queue()
        self._watchers: set[asyncio.Task[None]] = set()
        self.draining = asyncio.Event()
        self._done = asyncio.Event()  # run() is ending: the heartbeat loop stops
        # One spare thread: a handler past its timeout keeps its thread until the grace ends.
        self._pool = ThreadPoolExecutor(max_workers=identity.slots + 1, thread_name_prefix="predict")

    async def run(self) -> None:
        await self.store.register_worker(self.me.record(self.clock()), self.settings.heartbeat_ttl_s)
        log.info("worker %s registered for model %s (%d slot(s))", self.me.id, self.me.model, self.me.slots)
        beat = asyncio.create_task(self._heartbeats())
        try:
            await asyncio.gather(*(self._slot() for _ in range(self.me.slots)))
        finally:
            # The flag ends the loop even when the cancel is lost: redis-py can swallow a
            # cancellation that lands inside one of its calls, and the loop would beat forever.
            self._done.set()
            beat.cancel()
            await asyncio.gather(beat, return_exceptions=True)
            self._pool.shutdown(wait=False, cancel_futures=True)
            await self._deregister()

    async def _deregister(self) -> None:
        try:
            requeued, failed = await self.store.deregister_worker(self.me.id, self.me.model, self.clock())
        except StoreUnavailable as exc:
            log.warning("worker %s could not deregister (%s); its jobs go back once its heartbeat expires",
                        self.me.id, exc)
            return
        log.info("worker %s deregistered%s", self.me.id,
                 f" ({requeued} job(s) given back, {failed} failed)" if requeued or failed else "")

    async def drain(self) -> None:
        """Take no new jobs, give back the ones not started, let running ones finish."""
        if self.draining.is_set():
            return
        self.draining.set()
        try:
            await self.store.set_worker_state(self.me.id, WorkerState.DRAINING)
            returned, _ = await self.store.requeue_worker(self.me.id, self.me.model, "drain", self.clock())
        except StoreUnavailable as exc:
            # Deregistering gives them back too, or the reaper does once the heartbeat stops.
            log.warning("worker %s draining; its queued jobs stay until it deregisters: %s", self.me.id, exc)
            return
        log.info("worker %s draining: %d queued job(s) returned, %d running", self.me.id, returned,
                 len(self.running))

    async def _heartbeats(self) -> None:
        while not self._done.is_set():
            try:
                state, cancels = await self.store.heartbeat(self.me.id, self.settings.heartbeat_ttl_s)
                if state is None and not self.draining.is_set():
                    # The reaper took us for dead (e.g. a long pause) and gave our jobs away.
                    log.warning("worker %s was reaped while alive; registering again", self.me.id)
                    await self.store.register_worker(self.me.record(self.clock()), self.settings.heartbeat_ttl_s)
                for job_id in cancels:
                    ctx = self.running.get(job_id)
                    if ctx is not None and not ctx.stop.is_set():
                        log.info("job %s: stop requested", job_id)
                        ctx.stop.set()
                await self._reconcile()
            except StoreUnavailable as exc:
                log.warning("heartbeat failed: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._done.wait(), self.settings.heartbeat_interval_s)

    async def _reconcile(self) -> None:
        """Run the jobs our active list holds that this process never heard of.

        A BLMOVE whose reply was lost (Redis restarted or the connection dropped as it answered)
        moved a job that no slot knows about: left there it would hold a slot under the dispatch
        bound forever. Such a job is adopted when it is still unknown one heartbeat later, so a
        reply on its way to a slot is not mistaken for a lost one; starting it again is harmless
        (``start_job`` drops a job that is no longer ours).
        """
        if self.draining.is_set():
            return  # deregistering gives them back
        unknown = set(await self.store.active_jobs(self.me.id)) - self._held
        for job_id in sorted(unknown & self._unknown):
            log.warning("job %s is in this worker's active list but no slot took it (a lost reply?); "
                        "running it", job_id)
            self._held.add(job_id)
            self._adopted.put_nowait(job_id)
        self._unknown = unknown - self._held

    async def _slot(self) -> None:
        while not self.draining.is_set():
            try:
                job_id = self._adopted.get_nowait() if not self._adopted.empty() else None
                job_id = job_id or await self.store.take(self.me.id, _TAKE_BLOCK_S)
                if job_id is not None:
                    self._held.add(job_id)
                    try:
                        await self._run_job(job_id)
                    finally:
                        self._held.discard(job_id)
            except StoreUnavailable as exc:
                log.warning("redis unavailable: %s; retrying", exc)
                await asyncio.sleep(self.settings.heartbeat_interval_s)

    async def _until_stored(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        """``call()`` until Redis answers: for a start or a finish, whose scripts make a retry with
        the same arguments harmless even when the first try was applied and only its reply lost."""
        pause, tries, t0 = 0.05, 0, time.monotonic()
        while True:
            try:
                result = await call()
            except StoreUnavailable as exc:
                tries += 1
                log.log(logging.WARNING if tries == 1 else logging.DEBUG,
                        "%s not stored yet (%s); retrying until Redis answers", what, exc)
                await asyncio.sleep(pause)
                pause = min(2 * pause, _RETRY_CAP_S)
                continue
            if tries:
                log.info("%s stored after %d failed tries (%.1fs)", what, tries, time.monotonic() - t0)
            return result

    async def _run_job(self, job_id: str) -> None:
        # The job is already in our active list (BLMOVE): until its start is stored it must not be
        # given up, or it would hold a slot there forever.
        start_now = self.clock()
        started = await self._until_stored(
            f"start of job {job_id}", lambda: self.store.start_job(self.me.id, job_id, start_now))
        if started is None:
            return
        job_input, timeout_s, attempt = started
        ctx = JobContext(job_id, attempt, timeout_s)
        self.running[job_id] = ctx
        t0 = time.monotonic()
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._pool, run_with, ctx, self.handler.predict, job_input)
        ok = False
        try:
            result: Any = await asyncio.wait_for(asyncio.shield(future), timeout_s)
        except TimeoutError:
            ctx.stop.set()
            payload = f"timeout: the job ran longer than its timeout_s={timeout_s}"
            watcher = loop.create_task(self._watch_overrun(future, job_id))
            self._watchers.add(watcher)
            watcher.add_done_callback(self._watchers.discard)
        except Exception as exc:
            payload = format_error(exc)
        else:
            try:
                payload, ok = dumps_value(result), True
            except (TypeError, ValueError) as exc:
                payload = f"the handler's result is not JSON: {exc}"
        finally:
            self.running.pop(job_id, None)
        run_s = time.monotonic() - t0
        # The result exists only in this process: keep it until Redis has it.
        finish_now = self.clock()
        accepted = await self._until_stored(f"result of job {job_id}", lambda: self.store.finish_job(
            worker_id=self.me.id, model=self.me.model, job_id=job_id, attempt=attempt, ok=ok, payload=payload,
            run_s=run_s, now=finish_now,
        ))
        log.info("job %s %s in %.3fs%s", job_id, "succeeded" if ok else "failed", run_s,
                 "" if accepted else " (result discarded: job was canceled or reassigned)")

    async def _watch_overrun(self, future: asyncio.Future[Any], job_id: str) -> None:
        try:
            await asyncio.wait_for(asyncio.shield(future), self.settings.timeout_grace_s)
        except TimeoutError:
            log.error("job %s ignored its timeout for %.1fs more; exiting so the GPU is freed", job_id,
                      self.settings.timeout_grace_s)
            self._exit(EXIT_WEDGED)
        except Exception as exc:
            # It stopped, with an error, after its timeout; the job had already failed as timed out.
            log.info("job %s: handler ended after its timeout with %s", job_id, type(exc).__name__)
