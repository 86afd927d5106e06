"""Each simulation benchmark runs with ``--quick`` and writes the documented shape.

Only keys and types are checked, never timings or figures: the numbers are the benchmark's
output, not the test's.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench import BENCHMARKS, load

REPO = Path(__file__).resolve().parents[2]


def run_bench(name: str, out: Path) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-m", "bench", name, "--quick", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc: dict[str, Any] = json.loads((out / f"{name}.json").read_text())
    assert json.loads(proc.stdout) == doc  # the summary printed is the file written
    assert doc["benchmark"] == name
    assert doc["meta"]["quick"] is True
    assert (out / doc["plot"]).stat().st_size > 0
    return doc


@pytest.mark.parametrize("name", ["routing", "autoscale"])
def test_registered(name: str) -> None:
    module = load(name)
    assert name in BENCHMARKS
    assert callable(module.add_arguments) and callable(module.run)


def test_routing_quick(tmp_path: Path) -> None:
    doc = run_bench("routing", tmp_path)
    policies = doc["config"]["policies"]
    assert {"least-backlog", "least-latency", "hash"} <= set(policies)
    head = doc["headline"]
    assert (head["fleet"], head["size"], head["load"]) == ("heterogeneous", 100, 0.9)
    for arrivals in ("poisson", "azure"):
        for p in policies:
            row = head[arrivals][p]
            assert set(row) == {"prefetch_1", "best_prefetch", "best"}
            assert row["best_prefetch"] in (1, 2, 4)
            assert set(row["prefetch_1"]) == {"mean", "p99", "p99.9"}
    cells = doc["cells"]
    assert {c["prefetch"] for c in cells} == {1, 2, 4}
    for c in cells:
        assert set(c) == {"fleet", "size", "arrivals", "load", "prefetch", "ideal", "policies"}
        assert set(c["ideal"]) == {"mean", "p99", "p99.9"}
        for stats in c["policies"].values():
            assert set(stats) == {"mean", "p99", "p99.9", "ratio", "sim_s"}
            assert set(stats["ratio"]) == {"mean", "p99", "p99.9"}
    assert isinstance(doc["skipped"], list)


POLICIES = {"tidal", "tidal-cost-only", "tidal-slo-first", "static-peak", "oracle-schedule", "keda", "sagemaker"}
GOALS = {"not_dominated_by_static", "within_oracle_slack", "beats_keda", "beats_sagemaker",
         "short_gap_models_within_slo"}


def check_trace(res: dict[str, Any]) -> None:
    head = res["headline"]
    assert set(head["gpu_hours"]) == set(head["p95_wait_s"]) == POLICIES == set(res["policies"])
    assert head["oracle_bound_gpu_hours"] > 0
    assert head["target_p95_wait_s"] == res["policies"]["tidal"]["wait_s"]["p95"]
    for key in ("tidal_vs_oracle_bound", "tidal_vs_static_peak"):
        assert head[key] is None or head[key] > 0
    for rep in res["policies"].values():
        assert {"gpu_hours", "wait_s", "cold_starts", "peak_fleet", "meets_tidal_p95"} <= set(rep)
        assert {"p50", "p95", "p99"} <= set(rep["wait_s"])
    assert set(res["goals"]) == GOALS
    assert all(g["met"] in (True, False, None) for g in res["goals"].values())
    points = res["static_frontier"]
    assert points and all(a["gpu_hours"] <= b["gpu_hours"] and a["p95_wait_s"] > b["p95_wait_s"]
                          for a, b in itertools.pairwise(points))
    for row in res["models"].values():
        assert set(row["p95_wait_s"]) == set(row["gpu_hours"]) == POLICIES - {"static-peak"}
    assert res["oracle"]["binding"] in ("work", "knapsack")


def test_autoscale_quick_replays_the_family(tmp_path: Path) -> None:
    doc = run_bench("autoscale", tmp_path)
    assert set(doc["traces"]) == {"conversation", "bursty", "sparse", "flash", "step", "zipf"}
    for res in doc["traces"].values():
        check_trace(res)
    assert doc["headline_trace"] == "conversation"
    assert doc["headline"] == doc["traces"]["conversation"]["headline"]
    assert len(doc["traces"]["zipf"]["models"]) > 1
    assert doc["goals"] == {n: r["goals"] for n, r in doc["traces"].items()}


def test_autoscale_replays_any_csv_with_its_columns(tmp_path: Path) -> None:
    trace = tmp_path / "mine.csv"
    rows = [f"{t * 0.7:.2f},{'a' if t % 3 else 'b'},{0.5 + (t % 5) * 0.3:.2f}" for t in range(900)]
    trace.write_text("when,who,secs\n" + "\n".join(rows) + "\n")
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "autoscale", "--trace", str(trace), "--time-col", "when",
         "--model-col", "who", "--service-col", "secs", "--cold-start-s", "30", "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=110, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads((out / "autoscale.json").read_text())
    check_trace(doc)
    assert set(doc["models"]) == {"a", "b"}
    assert doc["config"]["cold_start_s"] == 30.0 and doc["config"]["trace"]["jobs"] == 900
