"""Joining registry and provider (``measure``) and choosing actions (``plan``): pure, no I/O."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from autoscaler import health
from autoscaler.act import plan
from autoscaler.observe import Booting, ModelFleet, measure
from autoscaler.policy import ModelState
from autoscaler.provider import Instance
from autoscaler.state import AutoscalerState, Broken, Launch, forget_old, from_json, to_json
from core.fleet import Counters, FleetSnapshot, ModelLoad, WorkerView
from core.registry import BootError

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
        policy={"echo": ModelState(held=((1.5, 2),), gpu_rate=0.5)},
        launch_seq={"echo": 3},
        launching={"i-1": Launch("echo", 5.0)},
        stopped={"i-2": 6.0},
        backoff_until={"echo": 7.0},
        failed_launches={"echo": 1},
        failed_in_a_row={"echo": 2},
        broken={"llm": Broken("3 launches in a row never registered a worker", "d1g3st")},
        provider={"unavailable": [{"instance_type": "g5.xlarge", "subnet": "subnet-1", "until": 9.0}]},
        counters={"echo": Counters(7, 3, 4.5)},
    )
    assert from_json(to_json(s)) == s
    wide = replace(s, launching={"i-4": Launch("echo", 5.0, capacity=8)})
    assert from_json(to_json(wide)).launching["i-4"].capacity == 8
    assert s.launch_token("echo") == "tidal-abcd-echo-3"
    assert AutoscalerState.fresh().launch_token("echo").endswith("-echo-0")


def test_counters_since_the_last_read() -> None:
    before = Counters(10, 4, 8.0)
    assert Counters(15, 6, 11.5).since(before) == Counters(5, 2, 3.5)
    assert Counters(15, 6, 11.5).since(None) == Counters()  # a first read tells nothing yet
    assert Counters(2, 1, 1.0).since(before) == Counters(2, 1, 1.0)  # totals went back: counted afresh


def test_policy_state_of_another_shape_is_dropped_and_the_rest_kept() -> None:
    s = AutoscalerState(epoch="abcd", launching={"i-1": Launch("echo", 5.0)})
    saved = json.loads(to_json(s))
    saved["policy"] = {"echo": {"below_since": 1.5, "window_peak": 2, "idle_since": None}}
    back = from_json(json.dumps(saved))
    assert back.policy == {} and back.launching == s.launching


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


def test_a_state_saved_before_pools_could_break_still_loads() -> None:
    old = to_json(AutoscalerState(epoch="e", launching={"i-1": Launch("echo", 5.0)}))
    legacy = old.replace(', "capacity": 1', "").replace('"broken": {}, ', "").replace('"failed_in_a_row": {}, ', "")
    assert "capacity" not in legacy and "broken" not in legacy
    loaded = from_json(legacy)
    assert loaded.launching["i-1"].capacity == 1 and loaded.broken == {} and loaded.failed_in_a_row == {}


# --- instances with several GPUs: one worker each, stopped whole ---------------------------


def test_booting_instances_count_their_gpus_and_launches_are_in_workers() -> None:
    f = fleet(worker("w1", "i-1"), booting=(Booting("i-2", NOW, capacity=4),))
    assert f.observation().booting == 4
    assert plan(f, 5, NOW).launch == 0
    assert plan(f, 8, NOW).launch == 3  # the provider turns 3 workers into instances of its type


def test_an_instance_is_drained_only_whole_and_only_when_all_its_workers_are_idle() -> None:
    f = fleet(
        *(worker(f"a{i}", "i-a", last_job_at=NOW - 900) for i in range(4)),
        worker("b0", "i-b", last_job_at=NOW - 100), worker("b1", "i-b", running=1),
        worker("c0", "i-c", last_job_at=NOW - 50), worker("c1", "i-c", last_job_at=NOW - 60),
    )
    assert plan(f, 4, NOW).drain == ("a0", "a1", "a2", "a3")  # 8 -> 4 exactly, the longest idle first
    a = plan(f, 5, NOW)
    assert a.drain == ("c0", "c1")  # i-a is 4 workers, more than the 3 to remove: the next that fits
    assert "1 more to remove" in a.describe()
    a = plan(f, 0, NOW)
    assert a.drain == ("a0", "a1", "a2", "a3", "c0", "c1")  # never half of i-b, whose b1 is busy
    assert "2 more to remove" in a.describe()


def test_a_booting_instance_is_cancelled_only_if_all_its_gpus_are_excess() -> None:
    f = fleet(worker("w1", "i-1"), booting=(Booting("i-2", NOW - 9, capacity=1), Booting("i-3", NOW, capacity=4)))
    assert plan(f, 3, NOW).terminate == ("i-2",)
    assert plan(f, 1, NOW).terminate == ("i-3", "i-2")


def test_an_instance_is_terminated_once_every_worker_on_it_is_drained() -> None:
    f = fleet(draining=(worker("a0", "i-a", state="draining"), worker("a1", "i-a", state="draining", running=1),
                        worker("b0", "i-b", state="draining"), worker("b1", "i-b", state="draining")))
    assert plan(f, 0, NOW).terminate == ("i-b",)
    mixed = fleet(worker("c0", "i-c"), draining=(worker("c1", "i-c", state="draining"),))
    assert plan(mixed, 0, NOW).terminate == ()


def test_measure_takes_capacity_from_the_instance_or_the_launch() -> None:
    fleets = measure(
        snapshot(), [Instance("i-1", "echo", "running", NOW - 5, "g5.12xlarge", None, 4)], {"echo": 1},
        launching={"i-2": Launch("echo", NOW - 1, capacity=8)}, stopped={}, boot_timeout_s=600, now=NOW,
    )
    assert fleets["echo"].booting == (Booting("i-1", NOW - 5, 4), Booting("i-2", NOW - 1, 8))


# --- boot errors, registration and broken pools ----------------------------------------------


def test_a_final_boot_error_fails_its_instance_at_once_and_is_the_pools_last_error() -> None:
    errors = {
        "i-1": BootError("unknown model 'echo': the registry has no models", NOW - 2, final=True),
        "i-2": BootError("load() failed: CUDA not ready", NOW - 1, final=False),  # may come up on a restart
        "i-3": BootError("from an earlier life of this id", NOW - 100, final=True),
    }
    fleets = measure(
        snapshot(), [inst("i-1", 10), inst("i-2", 10), inst("i-3", 10)], {"echo": 1}, launching={}, stopped={},
        boot_timeout_s=600, now=NOW, boot_errors={"echo": errors},
    )
    echo = fleets["echo"]
    assert echo.failed == ("i-1",)
    assert [b.instance_id for b in echo.booting] == ["i-2", "i-3"]
    assert echo.last_boot_error == "load() failed: CUDA not ready"


def test_measure_reports_launched_instances_whose_workers_registered() -> None:
    fleets = measure(
        snapshot(worker("w1", "i-1")), [inst("i-1", 60), inst("i-2", 60)], {"echo": 1},
        launching={"i-1": Launch("echo", NOW - 60), "i-2": Launch("echo", NOW - 60)}, stopped={},
        boot_timeout_s=600, now=NOW,
    )
    assert fleets["echo"].registered == ("i-1",)


def test_a_broken_pool_launches_nothing_and_says_why() -> None:
    a = plan(fleet(), 2, NOW, broken=Broken("3 launches in a row never registered a worker", "d"))
    assert a.launch == 0
    assert "pool broken: 3 launches in a row never registered a worker" in a.describe()


def _fails(state: AutoscalerState, n: int, digest: str | None = "d1") -> AutoscalerState:
    return health.failed(state, "llm", n, digest=digest, last_error="unknown model 'llm'", limit=3)


def test_three_failed_boots_in_a_row_break_a_pool_until_its_spec_changes() -> None:
    s = _fails(_fails(AutoscalerState(epoch="e"), 1), 1)
    assert s.failed_in_a_row["llm"] == 2 and "llm" not in s.broken
    s = _fails(s, 1)
    assert s.broken["llm"].digest == "d1"
    assert "3 launches in a row never registered" in s.broken["llm"].reason
    assert "last boot error: unknown model 'llm'" in s.broken["llm"].reason
    assert health.resume_if_changed(s, "llm", "d1") == s  # same spec: still broken
    resumed = health.resume_if_changed(s, "llm", "d2")
    assert "llm" not in resumed.broken and resumed.failed_in_a_row["llm"] == 0
    assert health.resume_if_changed(_fails(AutoscalerState(epoch="e"), 3, None), "llm", "d1").broken == {}


def test_a_registration_ends_the_run_of_failures() -> None:
    s = _fails(AutoscalerState(epoch="e", launching={"i-1": Launch("llm", 1.0)}), 2)
    s = health.registered(s, "llm", ("i-1",))
    assert s.failed_in_a_row["llm"] == 0 and s.launching == {}
    s = _fails(s, 2)
    assert "llm" not in s.broken  # 2 in a row since the registration, not 4
    assert health.registered(s, "llm", ()) is s
