"""Each simulation benchmark runs with ``--quick`` and writes the documented shape.

Only keys and types are checked, never timings or figures: the numbers are the benchmark's
output, not the test's.
"""

from __future__ import annotations

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


def test_autoscale_quick(tmp_path: Path) -> None:
    doc = run_bench("autoscale", tmp_path)
    names = {"tidal", "tidal-default-mean-run", "keda", "sagemaker", "static-peak", "oracle-schedule"}
    names.add(doc["config"]["tidal_short_window"]["name"])
    assert set(doc["policies"]) == names
    for rep in doc["policies"].values():
        assert {"gpu_hours", "booting_gpu_hours", "cold_starts", "peak_fleet", "wait_s"} <= set(rep)
        assert {"p50", "p95", "p99"} <= set(rep["wait_s"])
        assert rep["gpu_hours"] >= rep["booting_gpu_hours"] >= 0
    head = doc["headline"]
    assert set(head["gpu_hours"]) == names
    assert head["oracle_bound_gpu_hours"] > 0
    assert doc["oracle"]["binding"] in ("work", "knapsack")
    assert doc["static_peak"]["workers"] >= 1
    assert doc["config"]["trace"]["window_s"] == 600.0
