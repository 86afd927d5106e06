"""What every benchmark shares: result files, percentiles, plotting."""

from __future__ import annotations

import json
import os
import platform
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

REPO_ROOT = Path(__file__).resolve().parent.parent


def percentiles(values: Sequence[float] | np.ndarray, qs: Iterable[float]) -> dict[str, float]:
    """``{"p50": ..., "p99.9": ...}``; an empty sample gives NaN, written to JSON as null."""
    arr = np.asarray(values, dtype=float)
    out: dict[str, float] = {}
    for q in qs:
        key = f"p{q:g}"
        out[key] = float(np.percentile(arr, q)) if arr.size else float("nan")
    return out


def summary(values: Sequence[float] | np.ndarray) -> dict[str, float]:
    """Mean, p50, p95, p99 and p99.9 of a sample."""
    arr = np.asarray(values, dtype=float)
    return {"mean": float(arr.mean()) if arr.size else float("nan"), **percentiles(arr, (50, 95, 99, 99.9))}


def ratio(value: float, baseline: float) -> float | None:
    """``value / baseline``; ``None`` where the baseline is zero (the ratio means nothing)."""
    if baseline <= 0 or not np.isfinite(baseline) or not np.isfinite(value):
        return None
    return value / baseline


def _clean(obj: Any) -> Any:
    # JSON has no NaN or infinity; null says "not measured" without breaking strict parsers.
    if isinstance(obj, float):
        return obj if np.isfinite(obj) else None
    if isinstance(obj, np.floating | np.integer):
        return _clean(obj.item())
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    return obj


def emit(name: str, result: dict[str, Any], out: Path, *, wall_s: float, quick: bool, argv: list[str]) -> Path:
    """Add run metadata, write ``out/<name>.json`` and print the summary."""
    doc = {
        "benchmark": name,
        "meta": {
            "quick": quick,
            "wall_s": round(wall_s, 2),
            "argv": argv,
            "python": sys.version.split()[0],
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
        },
        **result,
    }
    path = out / f"{name}.json"
    text = json.dumps(_clean(doc), indent=2, allow_nan=False)
    path.write_text(text + "\n")
    print(text)
    return path


def figure(rows: int, cols: int, *, width: float = 5.0, height: float = 3.5) -> tuple[Figure, np.ndarray]:
    # Imported here: a benchmark that draws nothing (model, on a GPU host) runs without matplotlib.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    return fig, axes


def save(fig: Figure, path: Path) -> str:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name
