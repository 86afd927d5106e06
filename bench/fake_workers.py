"""Fake workers that take and finish every job dispatched to them at once, for the dispatcher benchmark.

They are registered like real workers (``Store.register_worker``, heartbeats kept alive). One
Lua call empties every worker queue, marks the jobs succeeded and publishes, per job, the
``free:<model>:<worker>`` event that ``finish.lua`` publishes, so the fleet frees its slots far
faster than one process per worker could. It reports how long jobs sat in a worker queue before being taken (the
"ack delay"), so a run can show that the fake fleet was not what held the dispatcher back.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from core import keys
from core.store import Store
from worker.runtime import WorkerIdentity

# KEYS: worker queues. ARGV: 1 job key prefix, 2 now, 3 dispatch channel, then per worker (in
# KEYS order) the event a real worker publishes when a job ends there (free:<model>:<worker>).
# Returns {jobs taken, summed ms between dispatch and take}.
DRAIN_LUA = """
local n, delay = 0, 0
local now = tonumber(ARGV[2])
for i = 1, #KEYS do
  local ids = redis.call('LPOP', KEYS[i], 1000)
  if ids then
    for _, id in ipairs(ids) do
      local jk = ARGV[1] .. id
      local at = tonumber(redis.call('HGET', jk, 'dispatched_at_s')) or now
      redis.call('HSET', jk, 'state', 'succeeded', 'status', 'finished', 'finished_at_s', ARGV[2])
      delay = delay + (now - at) * 1000
      n = n + 1
      redis.call('PUBLISH', ARGV[3], ARGV[3 + i])
    end
  end
end
return {n, tostring(delay)}
"""

HEARTBEAT_TTL_S = 5.0
HEARTBEAT_EVERY_S = 1.0
IDLE_POLL_S = 0.0005


def worker_ids(m: int) -> list[str]:
    return [f"fake-{i:04d}" for i in range(m)]


async def register(store: Store, model: str, ids: list[str]) -> None:
    now = time.time()
    for wid in ids:
        me = WorkerIdentity(wid, model, "1", 1.0, 1, "bench", "")
        await store.register_worker(me.record(now), HEARTBEAT_TTL_S)


@dataclass
class DrainStats:
    taken: int = 0
    passes: int = 0
    idle_passes: int = 0
    busy_s: float = 0.0
    delay_ms_sum: float = 0.0
    done_at: float = 0.0

    def doc(self, wall_s: float) -> dict[str, Any]:
        return {
            "taken": self.taken,
            "passes": self.passes,
            "idle_passes": self.idle_passes,
            "busy_fraction": self.busy_s / wall_s if wall_s else None,
            "mean_ack_delay_ms": self.delay_ms_sum / self.taken if self.taken else None,
        }


async def drain(url: str, model: str, ids: list[str], jobs: int, deadline_s: float) -> DrainStats:
    """Take jobs until ``jobs`` have been taken (or the deadline passes), keeping heartbeats alive."""
    store = Store.from_url(url)
    script = store.client.register_script(DRAIN_LUA)
    queues = [keys.worker_queue(w) for w in ids]
    freed = [keys.dispatch_event(keys.EV_FREE, model, w) for w in ids]
    stats = DrainStats()
    next_beat = 0.0
    end = time.monotonic() + deadline_s
    try:
        while stats.taken < jobs and time.monotonic() < end:
            if time.monotonic() >= next_beat:
                async with store.client.pipeline(transaction=False) as p:
                    for w in ids:
                        p.set(keys.worker_alive(w), "1", px=int(HEARTBEAT_TTL_S * 1000))
                    await p.execute()
                next_beat = time.monotonic() + HEARTBEAT_EVERY_S
            t0 = time.perf_counter()
            n, delay = await script(keys=queues, args=[keys.RQ_JOB_PREFIX, repr(time.time()), keys.CH_DISPATCH,
                                                       *freed])
            stats.busy_s += time.perf_counter() - t0
            stats.passes += 1
            stats.taken += int(n)
            stats.delay_ms_sum += float(delay)
            if not n:
                stats.idle_passes += 1
                await asyncio.sleep(IDLE_POLL_S)
        stats.done_at = time.time()
    finally:
        await store.close()
    return stats
