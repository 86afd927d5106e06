"""Replayable request traces from any CSV with an arrival-time column.

Each job's service time comes either from a service-time column or from token counts and a
stated GPU model: ``overhead_s + prefill_tokens / prefill_tok_per_s + generated_tokens /
decode_tok_per_s``. Arrival times may be timestamps (``2023-11-16 18:15:46.6805900``) or
numbers of seconds; they are shifted so the first arrival is at 0.
"""

from __future__ import annotations

import argparse
import csv
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from bench.common import REPO_ROOT

DEFAULT_TRACE = REPO_ROOT / "bench" / "traces" / "azure_llm_conv_2023.csv"


@dataclass(frozen=True, slots=True)
class GpuModel:
    """Per-request speeds of one worker serving one request at a time.

    Defaults: an H100 serving an 8B model (bf16). Prefill is compute-bound and fast; decode
    is what a single request sees when the server interleaves it with a few others.
    """

    prefill_tok_per_s: float = 10_000.0
    decode_tok_per_s: float = 50.0
    overhead_s: float = 0.05

    def service_s(self, prefill: np.ndarray, generated: np.ndarray) -> np.ndarray:
        return self.overhead_s + prefill / self.prefill_tok_per_s + generated / self.decode_tok_per_s


@dataclass(frozen=True, slots=True)
class TraceColumns:
    time: str = "TIMESTAMP"
    model: str | None = None
    service: str | None = None
    prefill: str = "ContextTokens"
    generated: str = "GeneratedTokens"


@dataclass(frozen=True, slots=True)
class Trace:
    """Jobs sorted by arrival; ``arrival_s[0] == 0``."""

    arrival_s: np.ndarray
    service_s: np.ndarray
    model: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.arrival_s.size)

    @property
    def duration_s(self) -> float:
        return float(self.arrival_s[-1]) if len(self) else 0.0

    def models(self) -> list[str]:
        return sorted(set(self.model))

    def only(self, model: str) -> Trace:
        keep = np.array([m == model for m in self.model], dtype=bool)
        return Trace(self.arrival_s[keep], self.service_s[keep], tuple(m for m in self.model if m == model))

    def window(self, start_s: float, end_s: float) -> Trace:
        """Jobs arriving in ``[start_s, end_s)``, re-based to start at 0."""
        keep = (self.arrival_s >= start_s) & (self.arrival_s < end_s)
        idx = np.flatnonzero(keep)
        arrivals = self.arrival_s[idx]
        base = arrivals[0] if idx.size else 0.0
        return Trace(arrivals - base, self.service_s[idx], tuple(self.model[i] for i in idx))


def _seconds(raw: str) -> float:
    try:
        return float(raw)
    except ValueError:
        pass
    head, _, frac = raw.strip().partition(".")
    # datetime takes at most 6 fractional digits; traces often carry 7.
    stamp = datetime.fromisoformat(head)
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return stamp.timestamp() + (float("0." + frac) if frac else 0.0)


def read_trace(path: Path, columns: TraceColumns = TraceColumns(), gpu: GpuModel = GpuModel()) -> Trace:
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        header = reader.fieldnames or []
        wanted = [columns.time, columns.model] + (
            [columns.service] if columns.service else [columns.prefill, columns.generated]
        )
        missing = [c for c in wanted if c and c not in header]
        if missing:
            raise ValueError(f"{path}: no column(s) {missing}; columns are {header}")
        rows = list(reader)
    arrivals = np.array([_seconds(r[columns.time]) for r in rows], dtype=float)
    if columns.service:
        service = np.array([float(r[columns.service]) for r in rows], dtype=float)
    else:
        prefill = np.array([float(r[columns.prefill]) for r in rows], dtype=float)
        generated = np.array([float(r[columns.generated]) for r in rows], dtype=float)
        service = gpu.service_s(prefill, generated)
    models = [r[columns.model] if columns.model else "default" for r in rows]
    order = np.argsort(arrivals, kind="stable")
    arrivals = arrivals[order] - (arrivals[order[0]] if rows else 0.0)
    return Trace(arrivals, service[order], tuple(models[i] for i in order))


def add_trace_arguments(parser: argparse.ArgumentParser) -> None:
    cols, gpu = TraceColumns(), GpuModel()
    g = parser.add_argument_group("trace")
    g.add_argument("--trace", type=Path, default=DEFAULT_TRACE, help="CSV file (default: %(default)s)")
    g.add_argument("--time-col", default=cols.time, help="arrival time column")
    g.add_argument("--model-col", default=None, help="model column (default: one model)")
    g.add_argument("--service-col", default=None, help="service time column in seconds (overrides tokens)")
    g.add_argument("--prefill-col", default=cols.prefill, help="prompt/context tokens column")
    g.add_argument("--generated-col", default=cols.generated, help="generated tokens column")
    g.add_argument("--prefill-tok-per-s", type=float, default=gpu.prefill_tok_per_s)
    g.add_argument("--decode-tok-per-s", type=float, default=gpu.decode_tok_per_s)
    g.add_argument("--overhead-s", type=float, default=gpu.overhead_s, help="fixed cost per request")


def trace_from_args(args: argparse.Namespace) -> Trace:
    columns = TraceColumns(args.time_col, args.model_col, args.service_col, args.prefill_col, args.generated_col)
    gpu = GpuModel(args.prefill_tok_per_s, args.decode_tok_per_s, args.overhead_s)
    path = args.trace if args.trace.is_absolute() else REPO_ROOT / args.trace
    return read_trace(path, columns, gpu)


def describe(trace: Trace) -> dict[str, float | int | list[str]]:
    gaps = np.diff(trace.arrival_s)
    per_min = np.bincount((trace.arrival_s // 60).astype(int)) if len(trace) else np.zeros(1)
    return {
        "jobs": len(trace),
        "duration_s": trace.duration_s,
        "models": trace.models(),
        "rate_per_s": len(trace) / trace.duration_s if trace.duration_s else 0.0,
        "interarrival_cv": float(gaps.std() / gaps.mean()) if gaps.size else 0.0,
        "service_mean_s": float(trace.service_s.mean()) if len(trace) else 0.0,
        "service_p99_s": float(np.percentile(trace.service_s, 99)) if len(trace) else 0.0,
        "peak_to_mean_per_minute": float(per_min.max() / per_min.mean()) if per_min.size else 0.0,
    }
