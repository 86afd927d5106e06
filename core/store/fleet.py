"""The fleet as one read: every registered worker and each model's backlog, policy, scale record and
running totals (jobs accepted, runs finished, their run seconds: the submit and finish scripts keep them)."""

from __future__ import annotations

from collections.abc import Iterable

from core import keys
from core.fleet import CounterField, Counters, FleetSnapshot, ModelLoad, ScaleRecord, WorkerView
from core.store.backend import Backend
from core.store.errors import store_call


class Fleet(Backend):
    @store_call(retry=True)
    async def snapshot(self, models: Iterable[str]) -> FleetSnapshot:
        models = list(models)
        ids = sorted(await self.client.smembers(keys.WORKERS))
        async with self.client.pipeline(transaction=False) as p:
            for wid in ids:
                p.hgetall(keys.worker_info(wid))
                p.exists(keys.worker_alive(wid))
                p.llen(keys.worker_queue(wid))
                p.llen(keys.worker_active(wid))
            for m in models:
                for q in keys.model_queues(m):
                    p.llen(q)
                p.get(keys.model_policy(m))
                p.hgetall(keys.model_scale(m))
                p.hmget(keys.model_counters(m), list(CounterField))
            res = await p.execute()
        workers = []
        for i in range(len(ids)):
            h, alive, queued, running = res[4 * i: 4 * i + 4]
            if h:
                workers.append(WorkerView.from_hash(h, bool(alive), int(queued), int(running)))
        loads = {}
        base = 4 * len(ids)
        for j, m in enumerate(models):
            hi, no, lo, policy, scale, counted = res[base + 6 * j: base + 6 * j + 6]
            loads[m] = ModelLoad(m, int(hi) + int(no) + int(lo), policy, ScaleRecord.from_hash(scale),
                                 Counters.from_values(counted))
        return FleetSnapshot(workers, loads)
