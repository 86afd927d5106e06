"""Memory of (instance type, subnet) pairs that recently had no capacity.

Like Karpenter's unavailable-offerings cache: a pair that failed for capacity is skipped
until its entry expires, so the next launch goes straight to a pair that may work. The
autoscaler runs as a fresh process per cron tick, so the memory round-trips through JSON
(the autoscaler's state in Redis); that is also why expiry is wall-clock epoch seconds,
not a monotonic reading that means nothing in the next process.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from core.errors import ConfigError

Offering = tuple[str | None, str | None]  # (instance type, subnet); None: the launch template's


class UnavailableOfferings:
    def __init__(self, ttl_s: float, now: Callable[[], float]) -> None:
        if ttl_s <= 0:
            raise ConfigError(f"unavailable ttl_s must be > 0, got {ttl_s}")
        self._ttl_s = ttl_s
        self._now = now
        self._until: dict[Offering, float] = {}

    def mark(self, instance_type: str | None, subnet: str | None) -> None:
        self._until[(instance_type, subnet)] = self._now() + self._ttl_s

    def is_unavailable(self, instance_type: str | None, subnet: str | None) -> bool:
        until = self._until.get((instance_type, subnet))
        if until is None:
            return False
        if until <= self._now():
            del self._until[(instance_type, subnet)]
            return False
        return True

    def until(self, instance_type: str | None, subnet: str | None) -> float | None:
        """Epoch seconds at which the pair may be tried again; None if it may be tried now."""
        if not self.is_unavailable(instance_type, subnet):
            return None
        return self._until[(instance_type, subnet)]

    def to_json(self) -> list[dict[str, Any]]:
        now = self._now()
        return [
            {"instance_type": t, "subnet": s, "until": until}
            for (t, s), until in sorted(self._until.items(), key=lambda kv: kv[1])
            if until > now
        ]

    def load_json(self, entries: object) -> None:
        """Replace the memory with ``entries`` as written by :meth:`to_json`.

        Persisted state is advisory: a malformed entry is dropped rather than failing the
        tick, since forgetting it only costs one more failed launch attempt.
        """
        self._until.clear()
        if not isinstance(entries, list):
            return
        now = self._now()
        for entry in entries:
            if not isinstance(entry, dict):
                continue
            t, s, until = entry.get("instance_type"), entry.get("subnet"), entry.get("until")
            if not (t is None or isinstance(t, str)) or not (s is None or isinstance(s, str)):
                continue
            if isinstance(until, bool) or not isinstance(until, int | float) or until <= now:
                continue
            # Never trust a stored expiry further out than one ttl, e.g. after the ttl was lowered.
            self._until[(t, s)] = min(float(until), now + self._ttl_s)
