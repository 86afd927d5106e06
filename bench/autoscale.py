"""``autoscale``: replay traces through Tidal's autoscaler policy and the baselines.

Every model of a trace gets its own queue and its own simulated fleet (:mod:`bench.fleet_sim`);
a policy's result is the total over the models (GPU-hours summed, waits pooled). Tidal's
policy is :func:`autoscaler.policy.decide` itself with its defaults (``core/settings.py``):
it learns run times and arrival rates from what it observes, starting from the default
``mean_run_s`` of 1 s, and its SLO is the default ``target_wait_p95_s`` (10 s).

Each trace gets the Pareto view, GPU-hours against p95 wait: Tidal (and two settings of its
cost bias), every constant fleet (:mod:`bench.static_fleet`), the oracle schedule and the
KEDA-like and SageMaker-like baselines. Constant fleets and the oracle are also sized to
meet Tidal's own p95, which answers "what would the same p95 have cost", and the goals of
issue 11 are checked per trace.

Without ``--trace`` the whole family is replayed: the conversation trace and the synthetic
traces of :mod:`bench.trace_family`.
"""

from __future__ import annotations

import argparse
import os
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from autoscaler.policy import ScalingConfig
from bench import oracle, trace_family
from bench.common import figure, ratio, save, summary
from bench.fleet_sim import Controller, FleetConfig, Outcome, initial_fleet, simulate
from bench.scalers import Keda, SageMaker, Schedule, Tidal
from bench.static_fleet import Allocation, ModelSizes, frontier, meeting, sizes_for
from bench.trace import DEFAULT_TRACE, Trace, TraceColumns, add_trace_arguments, describe, read_trace, trace_from_args
from core.settings import AutoscalerSettings, ModelSettings

QUICK_WINDOW_S = 600.0
# --quick replays the start of every trace of the family: enough to exercise every path.
QUICK_FAMILY_WINDOW_S = {"conversation": 600.0, "bursty": 3600.0, "sparse": 2 * 86400.0, "flash": 2400.0,
                         "step": 2400.0, "zipf": 1200.0}
ORACLE_SLACK = 1.25  # goal: Tidal's GPU-hours at most this times the oracle schedule's
DYNAMIC = ("tidal", "tidal-cost-only", "tidal-slo-first", "keda", "sagemaker")
COST_BIAS = {"tidal": None, "tidal-cost-only": 0.0, "tidal-slo-first": 10.0}
MOSTLY = 0.9  # "idle gaps mostly under a cold start": at least this share of them


@dataclass(frozen=True)
class Combined:
    """One policy over every model of a trace."""

    wait_s: np.ndarray
    gpu_s: float
    booting_s: float
    cold_starts: int
    cancelled_boots: int
    peak_fleet: int  # sum of the models' peaks
    end_s: float
    per_model: dict[str, Outcome]

    @classmethod
    def of(cls, outcomes: dict[str, Outcome]) -> Combined:
        o = list(outcomes.values())
        return cls(np.concatenate([x.wait_s for x in o]), sum(x.gpu_s for x in o), sum(x.booting_s for x in o),
                   sum(x.cold_starts for x in o), sum(x.cancelled_boots for x in o), sum(x.peak_fleet for x in o),
                   max(x.end_s for x in o), outcomes)

    @property
    def p95(self) -> float:
        return float(np.percentile(self.wait_s, 95))

    def report(self) -> dict[str, Any]:
        return {
            "gpu_hours": self.gpu_s / 3600,
            "booting_gpu_hours": self.booting_s / 3600,
            "wait_s": {**summary(self.wait_s), "max": float(np.max(self.wait_s))},
            "cold_starts": self.cold_starts,
            "cancelled_boots": self.cancelled_boots,
            "peak_fleet": self.peak_fleet,
            "end_s": self.end_s,
        }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cold-start-s", type=float, default=90.0, help="boot plus model load")
    parser.add_argument("--slots", type=int, default=ModelSettings.model_fields["slots"].default)
    parser.add_argument("--max-workers", type=int, default=1000, help="Tidal's max_workers per model")
    parser.add_argument("--keda-list-length", type=float, default=5.0, help="KEDA redis scaler listLength")
    parser.add_argument(
        "--sagemaker-target",
        type=float,
        default=None,
        help="backlog per instance; default acceptable_wait_s / the model's mean service (AWS's guidance)",
    )
    parser.add_argument("--oracle-interval-s", type=float, default=60.0)
    parser.add_argument("--window-s", type=float, default=None, help="replay only the first N s of each trace")
    parser.add_argument("--family", default=",".join(["conversation", *trace_family.GENERATORS]),
                        help="without --trace: the traces of the family to replay (comma-separated)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="simulation processes")
    add_trace_arguments(parser)
    parser.set_defaults(trace=None)  # none given: the family


def _family(args: argparse.Namespace) -> dict[str, Trace]:
    names = [n for n in args.family.split(",") if n]
    unknown = sorted(set(names) - {"conversation", *trace_family.GENERATORS})
    if unknown:
        family = ", ".join(["conversation", *trace_family.GENERATORS])
        raise SystemExit(f"unknown trace(s) {unknown}; the family is {family}")
    out = {}
    for name in names:
        if name == "conversation":
            trace = read_trace(DEFAULT_TRACE, TraceColumns())
        else:
            trace = read_trace(trace_family.path(name), trace_family.COLUMNS)
        window = args.window_s or (QUICK_FAMILY_WINDOW_S[name] if args.quick else None)
        out[name] = trace.window(0.0, window) if window else trace
    return out


def _tidal_config(args: argparse.Namespace, cost_bias: float | None) -> ScalingConfig:
    auto = AutoscalerSettings(cold_start_s=args.cold_start_s)
    model = ModelSettings(handler="bench:replay", slots=args.slots, max_workers=args.max_workers)
    if cost_bias is not None:
        model = model.model_copy(update={"cost_bias": cost_bias})
    return ScalingConfig.from_settings(auto, model)


def _controller(name: str, args: argparse.Namespace, mean_service_s: float) -> Controller:
    auto = AutoscalerSettings()
    if name in COST_BIAS:
        return Tidal(_tidal_config(args, COST_BIAS[name]), name=name)
    if name == "keda":
        return Keda(list_length=args.keda_list_length)
    return SageMaker(target=args.sagemaker_target or auto.acceptable_wait_s / mean_service_s)


def _simulate(arrival: np.ndarray, service: np.ndarray, controller: Controller, n0: int, cfg: FleetConfig) -> Outcome:
    return simulate(arrival, service, controller, n0, cfg)


def _oracle_model(trace: Trace, interval_s: float, target: float, slots: int, lead_s: float, cfg: FleetConfig
                  ) -> tuple[list[int], Outcome]:
    plan = oracle.feasible_plan(trace, interval_s, target, slots)
    schedule = Schedule(plan, interval_s, lead_s=lead_s, name="oracle-schedule")
    return plan, simulate(trace.arrival_s, trace.service_s, schedule, plan[0] if plan else 0, cfg)


@dataclass
class _Pending:
    trace: Trace
    models: dict[str, Trace]
    fleet: FleetConfig
    dynamic: dict[str, dict[str, Future[Outcome]]]
    sizes: dict[str, Future[ModelSizes]]


def _start(name: str, trace: Trace, args: argparse.Namespace, pool: Executor) -> _Pending:
    models = {m: trace.only(m) for m in trace.models()}
    fleet = FleetConfig(cold_start_s=args.cold_start_s, tick_s=AutoscalerSettings().interval_s, slots=args.slots,
                        sample_s=max(10.0, trace.duration_s / 1500))
    dynamic: dict[str, dict[str, Future[Outcome]]] = {p: {} for p in DYNAMIC}
    # The longest models first, so the pool's processes finish together.
    for m, t in sorted(models.items(), key=lambda kv: -len(kv[1])):
        n0 = initial_fleet(t.arrival_s, t.service_s, args.slots)
        for p in DYNAMIC:
            ctl = _controller(p, args, float(t.service_s.mean()))
            dynamic[p][m] = pool.submit(_simulate, t.arrival_s, t.service_s, ctl, n0, fleet)
    sizes = {m: pool.submit(sizes_for, t.arrival_s, t.service_s, args.slots, args.max_workers)
             for m, t in models.items()}
    return _Pending(trace, models, fleet, dynamic, sizes)


def _idle_gaps(trace: Trace, resolution_s: float) -> np.ndarray:
    """Gaps between busy periods with every job started at once (the trace's own idleness), as
    long as the autoscaler's tick at least: a pause inside a burst is not an idle gap."""
    busy_until = np.maximum.accumulate(trace.arrival_s + trace.service_s)
    gaps = trace.arrival_s[1:] - busy_until[:-1]
    return gaps[gaps >= resolution_s]


def _finish(name: str, p: _Pending, args: argparse.Namespace, pool: Executor) -> dict[str, Any]:
    results = {pol: Combined.of({m: f.result() for m, f in futs.items()}) for pol, futs in p.dynamic.items()}
    tidal = results["tidal"]
    target = tidal.p95
    # Each model's SLO is its own: constant fleets and the oracle meet, per model, the p95 Tidal gave it.
    per_model = {m: float(np.percentile(o.wait_s, 95)) for m, o in tidal.per_model.items()}
    lead = args.cold_start_s + AutoscalerSettings().interval_s
    oracles = {m: pool.submit(_oracle_model, t, args.oracle_interval_s, per_model[m], args.slots, lead, p.fleet)
               for m, t in p.models.items()}
    bounds_f = [pool.submit(oracle.lower_bound, t, args.oracle_interval_s, per_model[m], args.slots)
                for m, t in p.models.items()]
    sizes = {m: f.result() for m, f in p.sizes.items()}

    static_peak = meeting(sizes, per_model)
    # Constant fleets strictly better than Tidal on every model: if they also cost less, Tidal is dominated.
    below = meeting(sizes, {m: w * (1 - 1e-6) - 1e-6 for m, w in per_model.items()})
    bounds = sorted({0.0, *(r.p95 for r in results.values()), *np.geomspace(0.1, max(1.0, 4 * target), 24)})
    points = frontier(sizes, bounds)
    plans = {m: f.result() for m, f in oracles.items()}
    results["oracle-schedule"] = Combined.of({m: o for m, (_, o) in plans.items()})
    parts = [f.result() for f in bounds_f]
    bound = oracle.OracleBound(sum(b.dual_gpu_s for b in parts), sum(b.work_gpu_s for b in parts),
                               sum(b.late_allowed for b in parts))
    bound_h = bound.bound_gpu_s / 3600
    tidal_h = tidal.gpu_s / 3600

    policies: dict[str, dict[str, Any]] = {}
    for pol, r in results.items():
        rep = r.report()
        rep["meets_tidal_p95"] = r.p95 <= target + 1e-9
        rep["gpu_hours_vs_tidal"] = ratio(rep["gpu_hours"], tidal_h)
        rep["gpu_hours_vs_oracle_bound"] = ratio(rep["gpu_hours"], bound_h)
        policies[pol] = rep
    policies["static-peak"] = {
        "gpu_hours": static_peak.gpu_hours,
        "wait_s": {**summary(static_peak.waits), "max": float(static_peak.waits.max(initial=0.0))},
        "meets_tidal_p95": static_peak.p95_wait_s <= target + 1e-9,
        "gpu_hours_vs_tidal": ratio(static_peak.gpu_hours, tidal_h),
        "gpu_hours_vs_oracle_bound": ratio(static_peak.gpu_hours, bound_h),
        "cold_starts": 0,
        "peak_fleet": sum(static_peak.workers.values()),
    }
    order = [*DYNAMIC[:3], "static-peak", "oracle-schedule", *DYNAMIC[3:]]
    policies = {k: policies[k] for k in order}
    model_rows = _per_model(p, results, args)
    goals = _goals(results, static_peak, below, points, model_rows, args)
    return {
        "headline": {
            "target_p95_wait_s": target,
            "oracle_bound_gpu_hours": bound_h,
            "gpu_hours": {n: r["gpu_hours"] for n, r in policies.items()},
            "p95_wait_s": {n: r["wait_s"]["p95"] for n, r in policies.items()},
            "tidal_vs_oracle_bound": ratio(tidal_h, bound_h),
            "tidal_vs_static_peak": ratio(tidal_h, static_peak.gpu_hours),
        },
        "goals": goals,
        "policies": policies,
        "models": model_rows,
        "static_peak": {
            "workers": sum(static_peak.workers.values()),
            "per_model": static_peak.workers,
            "p95_wait_s": static_peak.p95_wait_s,
        },
        "static_frontier": [
            {"workers": sum(a.workers.values()), "gpu_hours": a.gpu_hours, "p95_wait_s": a.p95_wait_s} for a in points
        ],
        "oracle": {
            "bound_gpu_hours": bound_h,
            "knapsack_dual_gpu_hours": bound.dual_gpu_s / 3600,
            "work_gpu_hours": bound.work_gpu_s / 3600,
            "binding": "work" if bound.work_gpu_s >= bound.dual_gpu_s else "knapsack",
            "late_jobs_allowed": bound.late_allowed,
            "interval_s": args.oracle_interval_s,
            "schedule": {m: _runs(plan) for m, (plan, _) in plans.items()} if len(plans) > 1 else _runs(
                next(iter(plans.values()))[0]),
        },
        "trace": describe(p.trace),
        "_results": results,
        "_points": points,
        "_name": name,
    }


def _runs(plan: list[int]) -> list[list[int]]:
    """A per-interval plan as ``[workers, intervals]`` runs: two weeks of minutes stay small."""
    out: list[list[int]] = []
    for n in plan:
        if out and out[-1][0] == n:
            out[-1][1] += 1
        else:
            out.append([n, 1])
    return out


def _per_model(p: _Pending, results: dict[str, Combined], args: argparse.Namespace) -> dict[str, Any]:
    target = _tidal_config(args, None).target_wait_s
    rows = {}
    for m, t in p.models.items():
        gaps = _idle_gaps(t, AutoscalerSettings().interval_s)
        short = float(np.mean(gaps < args.cold_start_s)) if gaps.size else 1.0
        rows[m] = {
            "jobs": len(t),
            "service_mean_s": float(t.service_s.mean()),
            "idle_gaps": int(gaps.size),
            "idle_gap_share_below_cold_start": short,
            "p95_wait_s": {pol: float(np.percentile(r.per_model[m].wait_s, 95)) for pol, r in results.items()},
            "gpu_hours": {pol: r.per_model[m].gpu_s / 3600 for pol, r in results.items()},
            "target_wait_p95_s": target,
        }
    return rows


def _goals(results: dict[str, Combined], static_peak: Allocation, below: Allocation, points: list[Allocation],
           models: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    tidal = results["tidal"]
    g, w = tidal.gpu_s / 3600, tidal.p95
    dominating = [a for a in [*points, below] if a.gpu_hours < g - 1e-9 and a.p95_wait_s < w - 1e-9]
    worst = min(dominating, key=lambda a: a.gpu_hours) if dominating else None
    oracle_h = results["oracle-schedule"].gpu_s / 3600
    out: dict[str, Any] = {
        "not_dominated_by_static": {
            "met": worst is None,
            "dominating": None if worst is None else {"workers": sum(worst.workers.values()),
                                                      "gpu_hours": worst.gpu_hours, "p95_wait_s": worst.p95_wait_s},
            "static_at_tidal_p95_gpu_hours": static_peak.gpu_hours,
        },
        "within_oracle_slack": {"met": g <= ORACLE_SLACK * oracle_h + 1e-9, "ratio": ratio(g, oracle_h),
                                "limit": ORACLE_SLACK},
    }
    for base in ("keda", "sagemaker"):
        b = results[base]
        out[f"beats_{base}"] = {
            "met": g <= b.gpu_s / 3600 + 1e-9 and w <= b.p95 + 1e-9,
            "gpu_ratio": ratio(g, b.gpu_s / 3600),
            "p95_wait_s": {"tidal": w, base: b.p95},
        }
    short = {m: r for m, r in models.items() if r["idle_gap_share_below_cold_start"] >= MOSTLY}
    missed = {m: r["p95_wait_s"]["tidal"] for m, r in short.items()
              if r["p95_wait_s"]["tidal"] > r["target_wait_p95_s"]}
    out["short_gap_models_within_slo"] = {
        "met": not missed if short else None,
        "models": len(short),
        "missed": missed,
        "rule": f"models with at least {MOSTLY:.0%} of their idle gaps (longer than a tick) under "
                f"{args.cold_start_s:g} s; a model never idle counts",
    }
    return out


def _plot(done: dict[str, dict[str, Any]], path: Any) -> str:
    rows = len(done)
    fig, axes = figure(rows, 2, width=6.0, height=3.2)
    marks = {"tidal": ("tab:red", "o"), "tidal-cost-only": ("salmon", "v"), "tidal-slo-first": ("darkred", "^"),
             "keda": ("tab:green", "s"), "sagemaker": ("tab:purple", "D"), "oracle-schedule": ("black", "*"),
             "static-peak": ("tab:blue", "P")}
    for k, (name, res) in enumerate(done.items()):
        ax = axes[k][0]
        pts = res["_points"]
        ax.plot([a.p95_wait_s for a in pts], [a.gpu_hours for a in pts], "-o", color="tab:gray", ms=3, lw=0.8,
                label="constant fleets")
        for pol, rep in res["policies"].items():
            color, marker = marks[pol]
            ax.plot([rep["wait_s"]["p95"]], [rep["gpu_hours"]], marker, color=color, ms=8, label=pol, ls="none")
        ax.axhline(res["oracle"]["bound_gpu_hours"], color="black", ls=":", lw=0.8, label="oracle lower bound")
        ax.set_xscale("symlog", linthresh=1.0)
        ax.set_xlim(left=0.0)
        ax.set_xlabel("p95 queue wait (s)")
        ax.set_ylabel("GPU-hours")
        ax.set_title(f"{name}: GPU-hours vs p95 wait", fontsize=9)
        if k == 0:
            ax.legend(fontsize=6, loc="upper right")
        ax = axes[k][1]
        tl = _summed_timeline(res["_results"]["tidal"])
        t = np.array(tl["t"]) / 3600
        ax.plot(t, tl["queued"], color="tab:red", lw=0.6)
        ax.set_ylabel("queued jobs", color="tab:red")
        ax.set_xlabel("hours")
        ax2 = ax.twinx()
        ax2.plot(t, np.array(tl["ready"]) + np.array(tl["booting"]) + np.array(tl["draining"]), color="tab:blue",
                 lw=0.7)
        ax2.plot(t, tl["booting"], color="tab:cyan", lw=0.5)
        ax2.set_ylabel("Tidal's fleet (booting)", color="tab:blue")
        ax.set_title(f"{name}: Tidal over time, all models", fontsize=9)
    return save(fig, path)


def _summed_timeline(c: Combined) -> dict[str, list[float]]:
    tls = [o.timeline for o in c.per_model.values()]
    n = max(len(tl["t"]) for tl in tls)
    longest = next(tl for tl in tls if len(tl["t"]) == n)
    out: dict[str, list[float]] = {"t": list(longest["t"])}
    for key in ("queued", "ready", "booting", "draining"):
        acc = np.zeros(n)
        for tl in tls:
            acc[: len(tl[key])] += tl[key]
        out[key] = acc.tolist()
    return out


def _public(res: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in res.items() if not k.startswith("_")}


def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.trace is not None:
        full = trace_from_args(args)
        window = args.window_s or (QUICK_WINDOW_S if args.quick else None)
        traces = {args.trace.stem: full.window(0.0, window) if window else full}
    else:
        traces = _family(args)
    with ProcessPoolExecutor(max_workers=max(1, args.workers)) as pool:
        pending = {n: _start(n, t, args, pool) for n, t in traces.items()}
        done = {n: _finish(n, p, args, pool) for n, p in pending.items()}
    config = {
        "cold_start_s": args.cold_start_s,
        "tick_s": AutoscalerSettings().interval_s,
        "slots": args.slots,
        "dispatch_policy": FleetConfig().dispatch_policy,
        "tidal": asdict(_tidal_config(args, None)),
        "tidal_variants": {n: b for n, b in COST_BIAS.items() if b is not None},
        "keda": {k: v for k, v in asdict(Keda(list_length=args.keda_list_length)).items() if not k.startswith("_")},
        "sagemaker": {"target": args.sagemaker_target or "acceptable_wait_s / the model's mean service",
                      **{k: v for k, v in asdict(SageMaker(target=0.0)).items()
                         if not k.startswith("_") and k not in ("target", "idle_until")}},
        "oracle_slack": ORACLE_SLACK,
        "window_s": args.window_s or ("quick" if args.quick else None),
    }
    plot = _plot(done, args.out / "autoscale.png")
    if args.trace is not None:
        (res,) = done.values()
        out = _public(res)
        out["config"] = {**config, "trace": {"path": str(args.trace), **res["trace"]}}
        return {**out, "plot": plot}
    first = "conversation" if "conversation" in done else next(iter(done))
    return {
        "headline": done[first]["headline"],
        "headline_trace": first,
        "goals": {n: r["goals"] for n, r in done.items()},
        "traces": {n: _public(r) for n, r in done.items()},
        "config": config,
        "plot": plot,
    }

