"""The real-process benchmarks (pipeline, dispatcher, coldstart) run with ``--quick`` and write their shape.

Only keys, types and the plot's existence are checked, never timings: the numbers are the
benchmark's output, not the test's.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(170)]


def run_bench(name: str, out: Path) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-m", "bench", name, "--quick", "--out", str(out)], cwd=REPO,
                          capture_output=True, text=True, timeout=160, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc: dict[str, Any] = json.loads((out / f"{name}.json").read_text())
    assert json.loads(proc.stdout) == doc
    assert doc["benchmark"] == name and doc["meta"]["quick"] is True
    assert (out / doc["plot"]).suffix == ".png" and (out / doc["plot"]).stat().st_size > 0
    return doc


def is_num(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def check_load(doc: dict[str, Any], with_calls: bool) -> None:
    assert doc["failed"] == 0 and doc["jobs"] > 0
    assert is_num(doc["jobs_per_s"]) and is_num(doc["elapsed_s"])
    assert set(doc["latency_ms"]) == {"mean", "p50", "p95", "p99", "p99.9"}
    if with_calls:
        assert is_num(doc["commands_per_job"]) and is_num(doc["script_calls_per_job"])
        assert all(is_num(v) for v in doc["by_command_per_job"].values())


def test_pipeline(tmp_path: Path) -> None:
    doc = run_bench("pipeline", tmp_path)
    for side in ("tidal", "rq"):
        for kind in ("noop", "sleep_5ms"):
            check_load(doc[side][kind], with_calls=True)
        check_load(doc[side]["single_noop"], with_calls=False)
    check_load(doc["tidal"]["submit_only"]["bare_fastapi"], with_calls=False)
    check_load(doc["tidal"]["submit_only"]["tidal_api"], with_calls=True)
    for kind in ("noop", "sleep_5ms", "single_noop"):
        assert {"jobs_per_s", "p50_latency", "p99_latency"} <= set(doc["ratios_tidal_over_rq"][kind])
    assert is_num(doc["submit_fraction_of_bare_fastapi"])
    assert set(doc["single_noop_latency_ms"]) == {"p50", "p99", "jobs"}
    assert doc["config"]["workers"] >= 1


def test_dispatcher(tmp_path: Path) -> None:
    doc = run_bench("dispatcher", tmp_path)
    sizes, counts = doc["config"]["fleet_sizes"], doc["config"]["dispatchers"]
    assert [r["workers"] for r in doc["raw"]] == sizes
    assert {(c["workers"], c["dispatchers"]) for c in doc["cells"]} == {(m, n) for m in sizes for n in counts}
    for c in doc["cells"]:
        assert c["jobs"] == doc["config"]["jobs"] and c["fake_workers"]["taken"] == c["jobs"]
        assert is_num(c["jobs_per_s"]) and is_num(c["round_trips_per_job"]) and is_num(c["snapshots_per_job"])
        assert len(c["per_dispatcher"]) == c["dispatchers"]
        assert is_num(c["server"]["commands_per_job"])
    for m in sizes:
        assert set(doc["ratios"][str(m)]) == {"one_dispatcher_over_raw", "two_over_one_dispatcher"}
    assert set(doc["jobs_per_s_by_fleet"]) == {f"{n}_dispatcher" for n in counts}


def test_coldstart(tmp_path: Path) -> None:
    doc = run_bench("coldstart", tmp_path)
    assert len(doc["cycles"]) == doc["config"]["cycles"] >= 1
    for c in doc["cycles"]:
        for key in ("cold_to_registered_s", "cold_to_succeeded_s", "warm_succeeded_s", "burst_makespan_s",
                    "scale_down_to_one_s", "scale_down_to_zero_s"):
            assert is_num(c[key])
        assert c["burst_peak_workers"] >= 1
        assert all(len(p) == 2 for p in c["timeline"])
    assert set(doc["median"]) >= {"cold_to_succeeded_s", "warm_succeeded_s", "cold_start_overhead_s"}
    assert is_num(doc["ratios"]["cold_over_warm"])
    assert doc["shutdown"]["left_running"] == 0 and doc["shutdown"]["exit_code"] == 0
    for key in ("idle_timeout_s", "scale_down_window_s", "interval_s"):
        assert is_num(doc["config"][key])


def test_roundtrips(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "bench", "roundtrips", "--quick", "--jobs", "30", "--out",
                           str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=160, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc: dict[str, Any] = json.loads((tmp_path / "roundtrips.json").read_text())
    for phase in ("sequential", "concurrent"):
        p = doc[phase]
        assert p["succeeded"] == p["jobs"] == 30
        assert set(p["by_role"]) == {"api", "dispatcher", "worker"}
        # Every role does Redis work for every job; the figures themselves are the benchmark's output.
        assert all(is_num(r["round_trips_per_job"]) and r["round_trips_per_job"] > 0 for r in p["by_role"].values())
        assert is_num(p["server"]["commands_per_job"])
