"""A sleep handler that writes one line per execution, so a benchmark counts runs without asking Redis.

Redis keeps its own ``executions`` counter, but a counter in the store under test cannot prove
the store right (a restart from the AOF could lose an increment). Each line is
``<job id> <worker pid> <start time>``, written with one ``write`` to a file opened with
``O_APPEND``, so lines from concurrent workers never interleave.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from worker.context import current_job


class RecordingSleep:
    def __init__(self, path: str, ms: float = 50.0):
        self.path = path
        self.ms = ms
        self._fd = -1

    def load(self) -> None:
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def predict(self, input: Any) -> Any:
        ctx = current_job()
        job_id = ctx.job_id if ctx is not None else "-"
        os.write(self._fd, f"{job_id} {os.getpid()} {time.time():.6f}\n".encode())
        ms = float(input.get("ms", self.ms)) if isinstance(input, dict) else self.ms
        if ctx is not None and ctx.stop.wait(ms / 1000):
            return {"slept_ms": None, "stopped": True}
        if ctx is None:
            time.sleep(ms / 1000)
        return {"slept_ms": ms}


def read_executions(path: str) -> dict[str, list[tuple[int, float]]]:
    """Job id -> [(worker pid, start time)] in file order."""
    runs: dict[str, list[tuple[int, float]]] = {}
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return runs
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3:
            runs.setdefault(parts[0], []).append((int(parts[1]), float(parts[2])))
    return runs
