"""The autoscale benchmark's trace family: synthetic traces with fixed seeds, kept as CSVs.

``python -m bench.trace_family`` writes every trace to ``bench/traces/family/`` (the files in
the repository were made by exactly that; numpy's ``default_rng`` with the seeds below).
Each CSV has the columns ``t`` (arrival, seconds from the start), ``model`` and ``service_s``
(run time on one worker slot). The shapes are the ones an autoscaler meets and the
conversation trace lacks:

- ``bursty``: on/off (MMPP) bursts of 10-40 jobs/s lasting seconds, sub-second jobs, idle
  gaps spread log-uniformly from 5 s to 30 min; 8 hours.
- ``sparse``: two weeks of sparse diurnal traffic: sessions arrive by time of day (quiet
  nights, lighter weekends), each a few jobs apart by Pareto (heavy-tailed) gaps; jobs of tens
  of seconds; one popular model and one rare one.
- ``flash``: a steady 2 jobs/s that jumps to 10x for 5 minutes, then back.
- ``step``: 1 job/s, a step up to 6 jobs/s for 40 minutes, a step back down.
- ``zipf``: 24 models with Zipf(1.1) popularity, run times log-uniform from 50 ms to 60 s per
  model, half of them Poisson and half in on/off bursts; 2 hours.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bench.common import REPO_ROOT
from bench.trace import TraceColumns

FAMILY_DIR = REPO_ROOT / "bench" / "traces" / "family"
COLUMNS = TraceColumns(time="t", model="model", service="service_s")

Jobs = tuple[np.ndarray, np.ndarray]  # arrivals (s), service times (s)


def _poisson(rng: np.random.Generator, rate: float, start: float, end: float) -> np.ndarray:
    n = rng.poisson(rate * (end - start))
    return np.sort(rng.uniform(start, end, n))


def _lognormal(rng: np.random.Generator, n: int, median_s: float, sigma: float) -> np.ndarray:
    return median_s * np.exp(sigma * rng.standard_normal(n))


def _on_off(rng: np.random.Generator, duration_s: float, on_mean_s: float, rate_lo: float, rate_hi: float,
            gap_lo_s: float, gap_hi_s: float) -> np.ndarray:
    """Bursts: exponential on periods at a uniform rate each, log-uniform off periods."""
    t, out = 0.0, []
    while t < duration_s:
        t += math.exp(rng.uniform(math.log(gap_lo_s), math.log(gap_hi_s)))
        if t >= duration_s:
            break
        on = max(1.0, rng.exponential(on_mean_s))
        out.append(_poisson(rng, rng.uniform(rate_lo, rate_hi), t, min(t + on, duration_s)))
        t += on
    return np.sort(np.concatenate(out)) if out else np.zeros(0)


def bursty(rng: np.random.Generator) -> dict[str, Jobs]:
    arr = _on_off(rng, 8 * 3600.0, on_mean_s=8.0, rate_lo=10.0, rate_hi=40.0, gap_lo_s=5.0, gap_hi_s=1800.0)
    return {"bursty": (arr, _lognormal(rng, arr.size, 0.3, 0.6))}


def _diurnal_sessions(rng: np.random.Generator, days: int, peak_per_h: float, jobs_per_session: float,
                      median_run_s: float) -> Jobs:
    hours = np.arange(days * 24)
    hour_of_day, weekday = hours % 24, (hours // 24) % 7
    # Busy from 8h to 20h, peaking mid-afternoon; near zero at night; weekends at 40%.
    shape = np.clip(np.sin((hour_of_day - 7.0) / 14.0 * math.pi), 0.0, None) ** 2 + 0.02
    rate = peak_per_h * shape * np.where(weekday >= 5, 0.4, 1.0)
    starts = np.concatenate([_poisson(rng, r / 3600.0, h * 3600.0, (h + 1) * 3600.0) for h, r in zip(hours, rate,
                                                                                                     strict=True)])
    arrivals = []
    for s in starts:
        n = rng.geometric(1.0 / jobs_per_session)
        # Pareto gaps between a session's jobs: mostly seconds to minutes, sometimes much longer.
        gaps = np.minimum(5.0 * (1.0 + rng.pareto(1.2, n - 1)), 3 * 3600.0)
        arrivals.append(s + np.concatenate([[0.0], np.cumsum(gaps)]))
    arr = np.sort(np.concatenate(arrivals))
    arr = arr[arr < days * 86400.0]
    return arr, _lognormal(rng, arr.size, median_run_s, 0.5)


def sparse(rng: np.random.Generator) -> dict[str, Jobs]:
    return {
        "popular": _diurnal_sessions(rng, 14, peak_per_h=12.0, jobs_per_session=4.0, median_run_s=20.0),
        "rare": _diurnal_sessions(rng, 14, peak_per_h=0.6, jobs_per_session=2.0, median_run_s=40.0),
    }


def flash(rng: np.random.Generator) -> dict[str, Jobs]:
    base = 2.0
    arr = np.concatenate([
        _poisson(rng, base, 0.0, 1800.0),
        _poisson(rng, 10 * base, 1800.0, 2100.0),
        _poisson(rng, base, 2100.0, 4500.0),
    ])
    return {"web": (arr, _lognormal(rng, arr.size, 1.2, 0.5))}


def step(rng: np.random.Generator) -> dict[str, Jobs]:
    arr = np.concatenate([
        _poisson(rng, 1.0, 0.0, 1200.0),
        _poisson(rng, 6.0, 1200.0, 3600.0),
        _poisson(rng, 1.0, 3600.0, 4800.0),
    ])
    return {"batch": (arr, rng.gamma(4.0, 0.5, arr.size))}


def zipf(rng: np.random.Generator) -> dict[str, Jobs]:
    n_models, total_rate, duration = 24, 4.0, 2 * 3600.0
    weights = 1.0 / np.arange(1, n_models + 1) ** 1.1
    weights /= weights.sum()
    run_s = np.exp(rng.uniform(math.log(0.05), math.log(60.0), n_models))
    out: dict[str, Jobs] = {}
    for k in range(n_models):
        rate = total_rate * weights[k]
        if k % 2:
            # On/off with the same mean rate: on 20% of the time at 5x.
            on_mean = 30.0
            gap_mean = 4 * on_mean
            arr = _on_off(rng, duration, on_mean, 5 * rate * 0.8, 5 * rate * 1.2, gap_mean / 4, gap_mean * 2.5)
        else:
            arr = _poisson(rng, rate, 0.0, duration)
        out[f"m{k:02d}"] = (arr, _lognormal(rng, arr.size, run_s[k], 0.4))
    return out


GENERATORS: dict[str, tuple[int, Callable[[np.random.Generator], dict[str, Jobs]]]] = {
    "bursty": (11, bursty),
    "sparse": (12, sparse),
    "flash": (13, flash),
    "step": (14, step),
    "zipf": (15, zipf),
}


def path(name: str) -> Path:
    return FAMILY_DIR / f"{name}.csv"


def write(name: str) -> Path:
    seed, make = GENERATORS[name]
    jobs = make(np.random.default_rng(seed))
    rows = sorted((float(t), m, max(0.05, float(s))) for m, (arr, svc) in jobs.items()
                  for t, s in zip(arr, svc, strict=True))
    out = path(name)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w") as fh:
        fh.write("t,model,service_s\n")
        fh.writelines(f"{t:.3f},{m},{s:.3f}\n" for t, m, s in rows)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.trace_family", description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", default=list(GENERATORS), help="traces to write (default: all)")
    for name in parser.parse_args(argv).names:
        out = write(name)
        print(f"{out.relative_to(REPO_ROOT)}: {sum(1 for _ in out.open()) - 1} jobs, {out.stat().st_size // 1024} KiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
