"""Retrying throttled AWS calls with full-jitter exponential backoff.

Full jitter (sleep a uniform time in [0, min(cap, base * 2**attempt)]) spreads out
clients that were throttled together; see the AWS Architecture Blog, "Exponential Backoff
And Jitter".
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from botocore.exceptions import ClientError

from autoscaler.aws_errors import THROTTLE_CODES, error_code
from core.errors import ThrottledError

T = TypeVar("T")


@dataclass(frozen=True)
class Backoff:
    sleep: Callable[[float], None]
    max_attempts: int = 5
    base_s: float = 0.5
    cap_s: float = 20.0
    rand: Callable[[], float] = random.random

    def delay_s(self, attempt: int) -> float:
        """Sleep before retry number ``attempt`` (0 for the first retry)."""
        return self.rand() * min(self.cap_s, self.base_s * 2.0**attempt)

    def call(self, operation: str, fn: Callable[[], T]) -> T:
        """``fn()``, retried while AWS throttles it; ThrottledError once attempts run out.

        Any other ClientError propagates untouched so the caller can translate it with
        the context (instance type, subnet) it has.
        """
        for attempt in range(self.max_attempts):
            try:
                return fn()
            except ClientError as exc:
                if error_code(exc) not in THROTTLE_CODES:
                    raise
                if attempt + 1 == self.max_attempts:
                    raise ThrottledError(
                        f"ec2 {operation}: still throttled after {self.max_attempts} attempts: "
                        f"{error_code(exc)}"
                    ) from exc
                self.sleep(self.delay_s(attempt))
        raise AssertionError("unreachable: max_attempts >= 1")
