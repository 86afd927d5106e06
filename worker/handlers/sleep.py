from __future__ import annotations

import random
import time
from typing import Any

from worker.context import current_job


class Sleep:
    """Simulates GPU work: holds the slot for ``ms`` milliseconds, failing at ``fail_rate``.

    The input may override both: ``{"ms": 250, "fail_rate": 0.1}``. Stops early when the job
    is canceled or times out.
    """

    def __init__(self, ms: float = 100.0, fail_rate: float = 0.0, load_ms: float = 0.0):
        self.ms = ms
        self.fail_rate = fail_rate
        self.load_ms = load_ms
        self._rng = random.Random()

    def load(self) -> None:
        time.sleep(self.load_ms / 1000)  # stands in for reading weights onto the GPU

    def predict(self, input: Any) -> Any:
        opts = input if isinstance(input, dict) else {}
        ms = float(opts.get("ms", self.ms))
        fail_rate = float(opts.get("fail_rate", self.fail_rate))
        ctx = current_job()
        if ctx is not None:
            if ctx.stop.wait(ms / 1000):
                return {"slept_ms": None, "stopped": True}
        else:
            time.sleep(ms / 1000)
        if self._rng.random() < fail_rate:
            raise RuntimeError(f"simulated failure (fail_rate={fail_rate})")
        return {"slept_ms": ms}
