"""A broken pool stops spending: pure rules over the autoscaler's state.

Every instance launched for a pool either registers a worker or fails (its boot timeout passes,
or its worker reports that the model cannot run there). After ``max_failed_boots`` failures in a
row, with no registration between them, the pool is *broken*: it launches nothing more, and
``/v1/models`` says why. It resumes when the model's published spec changes (its settings or
its package: a new digest in the registry), or when a worker of it registers after all.
"""

from __future__ import annotations

from dataclasses import replace

from autoscaler.state import AutoscalerState, Broken


def resume_if_changed(state: AutoscalerState, pool: str, digest: str | None) -> AutoscalerState:
    """Lift a pool's break once the model's spec is no longer the one it broke with."""
    broken = state.broken.get(pool)
    if broken is None or broken.digest == digest:
        return state
    return replace(
        state,
        broken={p: b for p, b in state.broken.items() if p != pool},
        failed_in_a_row=dict(state.failed_in_a_row) | {pool: 0},
    )


def registered(state: AutoscalerState, pool: str, instance_ids: tuple[str, ...]) -> AutoscalerState:
    """Instances whose workers came up: the run of failures ends, and they are booting no more."""
    if not instance_ids:
        return state
    return replace(
        state,
        launching={i: v for i, v in state.launching.items() if i not in instance_ids},
        failed_in_a_row=dict(state.failed_in_a_row) | {pool: 0},
        broken={p: b for p, b in state.broken.items() if p != pool},
    )


def failed(
    state: AutoscalerState, pool: str, count: int, *, digest: str | None, last_error: str | None, limit: int
) -> AutoscalerState:
    """``count`` more instances of ``pool`` never registered; break the pool at ``limit`` in a row."""
    in_a_row = state.failed_in_a_row.get(pool, 0) + count
    state = replace(state, failed_in_a_row=dict(state.failed_in_a_row) | {pool: in_a_row})
    if in_a_row < limit or pool in state.broken:
        return state
    why = f"{in_a_row} launches in a row never registered a worker"
    if last_error:
        why += f"; last boot error: {last_error}"
    why += "; not launching until the model's settings or package change (`tidal models push`)"
    return replace(state, broken=dict(state.broken) | {pool: Broken(why, digest)})
