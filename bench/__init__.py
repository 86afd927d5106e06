"""Tidal's benchmarks, run as ``python -m bench <name> [--quick] [--out DIR]``.

A benchmark is a module with ``add_arguments(parser)`` and ``run(args) -> dict``; registering
one is one line in :data:`BENCHMARKS`. Modules are imported only when their benchmark runs,
so one benchmark's dependencies never break another.
"""

from __future__ import annotations

import argparse
import importlib
from typing import Any, Protocol, cast

BENCHMARKS: dict[str, str] = {
    "routing": "bench.routing",
    "autoscale": "bench.autoscale",
    "pipeline": "bench.pipeline",
    "dispatcher": "bench.dispatcher",
    "coldstart": "bench.coldstart",
    "roundtrips": "bench.roundtrips",
    "model": "bench.model",
    "chaos": "bench.chaos",
    "overload": "bench.overload",
}


class Benchmark(Protocol):
    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> dict[str, Any]: ...


def load(name: str) -> Benchmark:
    return cast(Benchmark, importlib.import_module(BENCHMARKS[name]))
