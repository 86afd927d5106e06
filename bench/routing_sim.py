"""Two simulations of one model's fleet fed from a central queue.

``with_policy`` models Tidal's dispatcher: jobs wait in the model's queue and the dispatcher
hands one to a worker only while that worker holds fewer than ``bound`` jobs (queued at the
worker plus running), choosing the worker with :func:`dispatcher.policies.choose`. The
dispatcher sees worker state the moment it changes (no heartbeat lag), so this is the
dispatcher at its best. ``ideal`` is a work-conserving central FCFS queue: the earliest job
goes to the first free worker, the fastest free worker first.

Both return each job's sojourn time (finish minus arrival).
"""

from __future__ import annotations

import bisect
import heapq
from collections import deque
from collections.abc import Sequence

import numpy as np

from bench.workload import Jobs
from dispatcher.policies import Candidate, PolicyState, choose

EWMA_ALPHA = 0.2
SLOTS = 1


def worker_ids(n: int) -> list[str]:
    # Zero-padded so that the dispatcher's sort by id keeps the fleet's order.
    return [f"w{i:05d}" for i in range(n)]


def with_policy(
    policy: str,
    speeds: Sequence[float],
    weights: Sequence[float],
    bound: int,
    jobs: Jobs,
    u: np.ndarray,
) -> np.ndarray:
    n = len(speeds)
    ids = worker_ids(n)
    index = {wid: i for i, wid in enumerate(ids)}
    queued = [0] * n
    running = [0] * n
    ewma: list[float | None] = [None] * n
    current = [-1] * n
    local: list[deque[int]] = [deque() for _ in range(n)]
    cand = [Candidate(ids[i], float(weights[i]), SLOTS, 0, 0, bound, None) for i in range(n)]
    open_ = list(range(n))  # workers with room, in id order
    state = PolicyState()
    central: deque[int] = deque()
    heap: list[tuple[float, int]] = []

    arrival = jobs.arrival.tolist()
    work = jobs.work.tolist()
    session = jobs.session
    uniforms = u.tolist()
    m = len(arrival)
    started = [0.0] * m
    finish = np.empty(m)
    nxt = 0
    draws = 0

    def refresh(i: int) -> None:
        out = queued[i] + running[i]
        cand[i] = Candidate(ids[i], float(weights[i]), SLOTS, queued[i], running[i], bound - out, ewma[i])

    while nxt < m or heap:
        if nxt < m and (not heap or arrival[nxt] <= heap[0][0]):
            t = arrival[nxt]
            central.append(nxt)
            nxt += 1
        else:
            t, i = heapq.heappop(heap)
            j = current[i]
            finish[j] = t
            run = t - started[j]
            e = ewma[i]
            ewma[i] = run if e is None else e + EWMA_ALPHA * (run - e)
            was_full = queued[i] + running[i] >= bound
            running[i] = 0
            if local[i]:
                j = local[i].popleft()
                queued[i] -= 1
                running[i] = 1
                current[i] = j
                started[j] = t
                heapq.heappush(heap, (t + work[j] / speeds[i], i))
            if was_full:
                bisect.insort(open_, i)
            refresh(i)
        while central and open_:
            cands = [cand[k] for k in open_]
            wid, state = choose(policy, cands, state, session=session[central[0]], u=uniforms[draws % len(uniforms)])
            draws += 1
            assert wid is not None
            i = index[wid]
            j = central.popleft()
            if running[i] == 0:
                running[i] = 1
                current[i] = j
                started[j] = t
                heapq.heappush(heap, (t + work[j] / speeds[i], i))
            else:
                local[i].append(j)
                queued[i] += 1
            if queued[i] + running[i] >= bound:
                del open_[bisect.bisect_left(open_, i)]
            refresh(i)
    sojourn: np.ndarray = finish - jobs.arrival
    return sojourn


def ideal(speeds: Sequence[float], jobs: Jobs) -> np.ndarray:
    n = len(speeds)
    free = [(-float(speeds[i]), i) for i in range(n)]
    heapq.heapify(free)
    central: deque[int] = deque()
    heap: list[tuple[float, int, int]] = []
    arrival = jobs.arrival.tolist()
    work = jobs.work.tolist()
    m = len(arrival)
    finish = np.empty(m)
    nxt = 0
    while nxt < m or heap:
        if nxt < m and (not heap or arrival[nxt] <= heap[0][0]):
            t = arrival[nxt]
            if free:
                _, i = heapq.heappop(free)
                heapq.heappush(heap, (t + work[nxt] / speeds[i], i, nxt))
            else:
                central.append(nxt)
            nxt += 1
        else:
            t, i, j = heapq.heappop(heap)
            finish[j] = t
            if central:
                j = central.popleft()
                heapq.heappush(heap, (t + work[j] / speeds[i], i, j))
            else:
                heapq.heappush(free, (-float(speeds[i]), i))
    sojourn: np.ndarray = finish - jobs.arrival
    return sojourn
