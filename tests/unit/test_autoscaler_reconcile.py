"""Joining registry and provider (``measure``) and choosing actions (``plan``): pure, no I/O."""

from __future__ import annotations

import pytest

from autoscaler.act import plan
from autoscaler.observe import Booting, ModelFleet, measure
from autoscaler.policy import ModelState
from autoscaler.provider import Instance
from autoscaler.state import AutoscalerState, Launch, forget_old, from_json, to_json
from core.fleet import FleetSnapshot, ModelLoad, WorkerView

NOW = 10_000.0


def worker(
    wid: str,
    instance_id: str = "",
    *,
    model: str = "echo",
    state: str = "ready",
    alive: bool = True,
    queued: int = 0,
    running: int = 0,
    last_job_at: float | None = None,
) -> WorkerView:
    return WorkerView(
        id=wid, model=model, version="1", weight=1.0, slots=1, host="h", pid=1, instance_id=instance_id,
        state=state, alive=alive, queued=queued, running=running, started_at=NOW - 1000,
        last_job_at=last_job_at, ewma_run_s=None, jobs_done=0,
    )


def inst(iid: str, age_s: float, state: str = "running", pool: str = "echo") -> Instance:
    return Instance(iid, pool, state, NOW - age_s)  # type: ignore[arg-type]


def snapshot(*workers: WorkerView, backlog: int = 0) -> FleetSnapshot:
    return FleetSnapshot(list(workers), {"echo": ModelLoad("echo", backlog, None)})


def test_measure_joins_instances_to_workers() -> None:
    fleets = measure(
        snapshot(
            worker("w1", "i-1", running=1),
            worker("w2", "i-2"),
            worker("w3", "i-3", state="draining", queued=1),
            worker("dead", "i-4", alive=False),
            worker("manual"),  # started by hand: counts, but is not the provider's
            worker("other", "i-9", model="other"),
            backlog=7,
        ),
        [
            inst("i-1", 900), inst("i-2", 900), inst("i-3", 900),
            inst("i-4", 900),  # its worker died long after boot: a failed instance now
            inst("i-5", 30),  # booting
            inst("i-6", 30, state="stopping"),
            inst("i-7", 30),  # we stopped it; the provider still lists it
        ],
        {"echo": 1},
        launching={
            "i-8": Launch("echo", NOW - 5),  # not listed yet: booting
            "i-1": Launch("echo", NOW - 900),
            "i-6": Launch("echo", NOW - 30),  # listed, as stopping: not capacity
        },
        stopped={"i-7": NOW - 2},
        boot_timeout_s=600,
        now=NOW,
    )
    echo = fleets["echo"]
    assert [w.id for w in echo.ready] == ["w1", "w2", "manual"]
    assert [w.id for w in echo.draining] == ["w3"]
    assert echo.booting == (Booting("i-5", NOW - 30), Booting("i-8", NOW - 5))
    assert echo.failed == ("i-4",)
    assert echo.managed == {"i-1", "i-2", "i-3", "i-4", "i-5", "i-8"}
    o = echo.observation()
    assert (o.queued, o.in_flight, o.workers, o.idle_workers, o.booting, o.draining) == (7, 1, 3, 2, 2, 1)


def fleet(*ready: WorkerView, booting: tuple[Booting, ...] = (), draining: tuple[WorkerView, ...] = (),
          failed: tuple[str, ...] = (), unmanaged: tuple[str, ...] = ()) -> ModelFleet:
    ids = {w.instance_id for w in (*ready, *draining)} | {b.instance_id for b in booting} | set(failed)
    return ModelFleet("echo", 0, 1, tuple(ready), tuple(draining), booting, failed,
                      frozenset(ids - {"", *unmanaged}))


def test_plan_launches_the_difference() -> None:
    a = plan(fleet(worker("w1", "i-1"), booting=(Booting("i-2", NOW),)), 5, NOW)
    assert (a.launch, a.drain, a.terminate) == (3, (), ())


def test_plan_pauses_launches_during_backoff() -> None:
    a = plan(fleet(), 2, NOW, backoff_until=NOW + 5)
    assert a.launch == 0 and "paused" in a.describe()
    assert plan(fleet(), 2, NOW, backoff_until=NOW).launch == 2


def test_plan_removes_booting_newest_first_then_the_longest_idle() -> None:
    f = fleet(
        worker("busy", "i-1", running=1),
        worker("recent", "i-2", last_job_at=NOW - 10),
        worker("old", "i-3", last_job_at=NOW - 500),
        worker("manual", ""),
        booting=(Booting("i-4", NOW - 50), Booting("i-5", NOW - 5)),
    )
    assert plan(f, 5, NOW).terminate == ("i-5",)
    a = plan(f, 2, NOW)
    assert a.terminate == ("i-5", "i-4")
    assert a.drain == ("old", "recent")
    a = plan(f, 0, NOW)
    assert a.drain == ("old", "recent")  # never the busy one, never one the provider does not run
    assert "2 more to remove" in a.describe()


def test_plan_stops_drained_workers_and_failed_instances() -> None:
    f = fleet(
        draining=(
            worker("empty", "i-1", state="draining"),
            worker("full", "i-2", state="draining", running=1),
            worker("manual", "", state="draining"),
        ),
        failed=("i-9",),
    )
    a = plan(f, 0, NOW)
    assert a.terminate == ("i-9", "i-1")
    assert a.failed == ("i-9",)
    assert a.drain == ()


def test_state_round_trips_through_json() -> None:
    s = AutoscalerState(
        epoch="abcd",
        policy={"echo": ModelState(below_since=1.5, window_peak=2, idle_since=None)},
        launch_seq={"echo": 3},
        launching={"i-1": Launch("echo", 5.0)},
        stopped={"i-2": 6.0},
        backoff_until={"echo": 7.0},
        failed_launches={"echo": 1},
        provider={"unavailable": [{"instance_type": "g5.xlarge", "subnet": "subnet-1", "until": 9.0}]},
    )
    assert from_json(to_json(s)) == s
    assert s.launch_token("echo") == "tidal-abcd-echo-3"
    assert AutoscalerState.fresh().launch_token("echo").endswith("-echo-0")


@pytest.mark.parametrize("text", ["", "[]", '{"epoch": "x"}', '{"epoch": "x", "policy": 3}'])
def test_malformed_state_is_rejected(text: str) -> None:
    with pytest.raises(ValueError, match="not an autoscaler state"):
        from_json(text)


def test_forget_old_drops_expired_entries() -> None:
    s = AutoscalerState(
        epoch="e",
        launching={"old": Launch("echo", 0.0), "new": Launch("echo", 95.0)},
        stopped={"old": 0.0, "new": 99.0},
        backoff_until={"echo": 99.0, "other": 200.0},
    )
    kept = forget_old(s, now=100.0, keep_s=10.0)
    assert set(kept.launching) == {"new"} and set(kept.stopped) == {"new"}
    assert kept.backoff_until == {"other": 200.0}


def test_plan_puts_draining_workers_back_to_work_before_launching() -> None:
    f = fleet(
        worker("w1", "i-1"),
        draining=(worker("busy", "i-2", state="draining", running=1), worker("empty", "i-3", state="draining")),
    )
    a = plan(f, 2, NOW)
    assert (a.undrain, a.launch, a.terminate) == (("busy",), 0, ("i-3",))
    a = plan(f, 4, NOW)
    assert (a.undrain, a.launch, a.terminate) == (("busy", "empty"), 1, ())
    assert "reuse draining busy, empty" in a.describe()
    a = plan(f, 1, NOW)
    assert (a.undrain, a.launch, a.terminate) == ((), 0, ("i-3",))
