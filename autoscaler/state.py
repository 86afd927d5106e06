"""What the autoscaler remembers between ticks, and its JSON form.

It is kept in Redis so that separate ``tidal autoscale --once`` runs (cron) carry on where
the last one stopped: the policy's windows, launches the provider may not list yet,
instances already told to stop, and pools backing off after a failed launch.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, runtime_checkable

from autoscaler.policy import ModelState
from core.fleet import Counters


@dataclass(frozen=True, slots=True)
class Launch:
    pool: str
    at: float
    capacity: int = 1  # workers the instance will run


@dataclass(frozen=True, slots=True)
class Broken:
    """A pool that stopped launching: why, and the model's spec digest it stopped at."""

    reason: str
    digest: str | None


@dataclass(frozen=True, slots=True)
class AutoscalerState:
    # Random per state, so launch tokens never repeat even if the state is lost and restarted.
    epoch: str
    policy: Mapping[str, ModelState] = field(default_factory=dict)
    launch_seq: Mapping[str, int] = field(default_factory=dict)
    # Instances launched whose worker has not registered; the provider may not list them yet.
    launching: Mapping[str, Launch] = field(default_factory=dict)
    # Instances we terminated, by when; a provider may go on listing them for a while.
    stopped: Mapping[str, float] = field(default_factory=dict)
    backoff_until: Mapping[str, float] = field(default_factory=dict)
    failed_launches: Mapping[str, int] = field(default_factory=dict)
    # Per pool, launched instances in a row whose workers never registered; reset by one that did.
    failed_in_a_row: Mapping[str, int] = field(default_factory=dict)
    broken: Mapping[str, Broken] = field(default_factory=dict)
    # Opaque memory of a provider that keeps some (the EC2 one's unavailable offerings).
    provider: Mapping[str, Any] = field(default_factory=dict)
    # Each model's running totals (arrivals, completions) as the last tick read them.
    counters: Mapping[str, Counters] = field(default_factory=dict)

    @classmethod
    def fresh(cls) -> AutoscalerState:
        return cls(epoch=secrets.token_hex(4))

    def launch_token(self, pool: str) -> str:
        """The token of the pool's next launch: a retry after a crash reuses it, so launches once."""
        return f"tidal-{self.epoch}-{pool}-{self.launch_seq.get(pool, 0)}"


@runtime_checkable
class ProviderWithState(Protocol):
    """A provider whose memory must outlive the process, as in one cron run to the next."""

    def export_state(self) -> dict[str, Any]: ...

    def import_state(self, state: Mapping[str, Any]) -> None: ...


def to_json(state: AutoscalerState) -> str:
    return json.dumps(
        {
            "epoch": state.epoch,
            "policy": {m: s.to_dict() for m, s in state.policy.items()},
            "launch_seq": dict(state.launch_seq),
            "launching": {
                i: {"pool": launch.pool, "at": launch.at, "capacity": launch.capacity}
                for i, launch in state.launching.items()
            },
            "stopped": dict(state.stopped),
            "backoff_until": dict(state.backoff_until),
            "failed_launches": dict(state.failed_launches),
            "failed_in_a_row": dict(state.failed_in_a_row),
            "broken": {p: {"reason": b.reason, "digest": b.digest} for p, b in state.broken.items()},
            "provider": dict(state.provider),
            "counters": {m: [c.arrivals, c.completions, c.run_s] for m, c in state.counters.items()},
        },
        sort_keys=True,
    )


def _policy(saved: Mapping[str, Any]) -> dict[str, ModelState]:
    """The models' policy states that read back. The policy's memory is relearned from traffic, so
    one saved in another shape (an earlier version's) is dropped rather than failing the whole state,
    whose launches in progress must not be forgotten."""
    out = {}
    for model, d in saved.items():
        try:
            out[model] = ModelState.from_dict(d)
        except (KeyError, TypeError, ValueError, AttributeError):
            continue
    return out


def from_json(text: str) -> AutoscalerState:
    """Parse a saved state; ``ValueError`` if it is not one."""
    try:
        d = json.loads(text)
        return AutoscalerState(
            epoch=str(d["epoch"]),
            policy=_policy(d["policy"]),
            launch_seq={p: int(n) for p, n in d["launch_seq"].items()},
            launching={
                i: Launch(str(v["pool"]), float(v["at"]), int(v.get("capacity", 1))) for i, v in d["launching"].items()
            },
            stopped={i: float(t) for i, t in d["stopped"].items()},
            backoff_until={p: float(t) for p, t in d["backoff_until"].items()},
            failed_launches={p: int(n) for p, n in d["failed_launches"].items()},
            # Absent from states saved before pools could break.
            failed_in_a_row={p: int(n) for p, n in d.get("failed_in_a_row", {}).items()},
            broken={
                p: Broken(str(b["reason"]), None if b["digest"] is None else str(b["digest"]))
                for p, b in d.get("broken", {}).items()
            },
            provider=dict(d.get("provider", {})),
            counters={m: Counters(int(a), int(c), float(r)) for m, (a, c, r) in d.get("counters", {}).items()},
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ValueError(f"not an autoscaler state: {exc!r}") from exc


def forget_old(state: AutoscalerState, now: float, keep_s: float) -> AutoscalerState:
    """Drop launches and stops older than ``keep_s``: by then the provider lists (or dropped) them."""
    return replace(
        state,
        launching={i: v for i, v in state.launching.items() if now - v.at < keep_s},
        stopped={i: t for i, t in state.stopped.items() if now - t < keep_s},
        backoff_until={p: t for p, t in state.backoff_until.items() if t > now},
    )
