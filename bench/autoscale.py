"""``autoscale``: replay a trace through Tidal's autoscaler policy and the baselines.

Every policy drives the same simulated fleet (:mod:`bench.fleet_sim`) fed the same trace.
Tidal's policy runs with its defaults from ``core/settings.py``; the model's ``mean_run_s``
is set to the trace's mean service time, as an operator would. Two variants show what the
defaults cost: ``mean_run_s`` left at 1 s, and a scale-down window lengthened by one cold
start. Static provisioning and the oracle are sized to meet Tidal's p95 queue
wait, so their GPU-hours answer "what would the same p95 have cost".
"""

from __future__ import annotations

import argparse
import math
from dataclasses import asdict, replace
from typing import Any

import numpy as np

from autoscaler.policy import ScalingConfig
from bench import oracle
from bench.common import figure, ratio, save, summary
from bench.fleet_sim import Controller, FleetConfig, Outcome, initial_fleet, offered_workers, simulate
from bench.scalers import Keda, SageMaker, Schedule, Static, Tidal
from bench.trace import Trace, add_trace_arguments, describe, trace_from_args
from core.settings import AutoscalerSettings, ModelSettings

QUICK_WINDOW_S = 600.0


def _report(o: Outcome) -> dict[str, Any]:
    return {
        "gpu_hours": o.gpu_s / 3600,
        "booting_gpu_hours": o.booting_s / 3600,
        "wait_s": {**summary(o.wait_s), "max": float(np.max(o.wait_s))},
        "cold_starts": o.cold_starts,
        "cancelled_boots": o.cancelled_boots,
        "peak_fleet": o.peak_fleet,
        "end_s": o.end_s,
    }


def _p95(o: Outcome) -> float:
    return float(np.percentile(o.wait_s, 95))


def static_search(trace: Trace, cfg: FleetConfig, max_wait_s: float) -> tuple[int, Outcome, list[dict[str, float]]]:
    """The smallest constant fleet whose p95 wait is within ``max_wait_s`` (bisection)."""
    tried: dict[int, Outcome] = {}

    def run(n: int) -> Outcome:
        if n not in tried:
            tried[n] = simulate(trace, Static(n, name="static-peak"), n, cfg)
        return tried[n]

    hi = max(1, math.ceil(float(offered_workers(trace, cfg.slots, 60.0).max())))
    while _p95(run(hi)) > max_wait_s:
        hi *= 2
    lo = 0  # invariant: lo fails (or is zero), hi meets
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _p95(run(mid)) <= max_wait_s:
            hi = mid
        else:
            lo = mid
    steps = [{"workers": n, "p95_wait_s": _p95(o), "gpu_hours": o.gpu_s / 3600} for n, o in sorted(tried.items())]
    return hi, tried[hi], steps


def plot(outcomes: dict[str, Outcome], path: Any) -> str:
    names = list(outcomes)
    cols = 2
    rows = math.ceil(len(names) / cols)
    fig, axes = figure(rows, cols, width=6.0, height=3.0)
    for k, name in enumerate(names):
        ax = axes[k // cols][k % cols]
        tl = outcomes[name].timeline
        t = np.array(tl["t"]) / 60
        fleet = np.array(tl["ready"]) + np.array(tl["booting"]) + np.array(tl["draining"])
        ax.plot(t, tl["queued"], color="tab:red", lw=0.8, label="queued jobs")
        ax.set_ylabel("queued jobs", color="tab:red")
        ax.set_xlabel("minutes")
        ax2 = ax.twinx()
        ax2.plot(t, fleet, color="tab:blue", lw=0.9, label="fleet (incl. booting)")
        ax2.plot(t, tl["booting"], color="tab:cyan", lw=0.6, label="booting")
        ax2.set_ylabel("instances", color="tab:blue")
        ax.set_title(name, fontsize=9)
        if k == 0:
            ax2.legend(fontsize=7, loc="upper right")
    for k in range(len(names), rows * cols):
        axes[k // cols][k % cols].axis("off")
    return save(fig, path)


SHORT_WINDOW_S = 30.0  # the window an earlier default used; kept as a sensitivity row


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cold-start-s", type=float, default=90.0, help="boot plus model load")
    parser.add_argument("--slots", type=int, default=ModelSettings.model_fields["slots"].default)
    parser.add_argument("--max-workers", type=int, default=1000, help="Tidal's max_workers for the model")
    parser.add_argument("--keda-list-length", type=float, default=5.0, help="KEDA redis scaler listLength")
    parser.add_argument(
        "--sagemaker-target",
        type=float,
        default=None,
        help="backlog per instance; default acceptable_wait_s / mean service (AWS's guidance)",
    )
    parser.add_argument("--oracle-interval-s", type=float, default=60.0)
    parser.add_argument("--window-s", type=float, default=None, help="replay only the first N s (quick: 600)")
    add_trace_arguments(parser)


def run(args: argparse.Namespace) -> dict[str, Any]:
    full = trace_from_args(args)
    if len(full.models()) > 1:
        raise SystemExit(f"autoscale replays one model; pick one of {full.models()} with a filtered trace")
    window = args.window_s or (QUICK_WINDOW_S if args.quick else None)
    trace = full.window(0.0, window) if window else full

    auto = AutoscalerSettings()
    mean_run = float(trace.service_s.mean())
    model = ModelSettings(handler="bench:replay", slots=args.slots, mean_run_s=mean_run, max_workers=args.max_workers)
    default_model = ModelSettings(handler="bench:replay", slots=args.slots, max_workers=args.max_workers)
    tidal_cfg = ScalingConfig.from_settings(auto, model)
    default_cfg = ScalingConfig.from_settings(auto, default_model)
    # Sensitivity to the scale-down window: a short one releases capacity during lulls shorter
    # than a cold start, which then cannot come back in time.
    short_cfg = replace(tidal_cfg, scale_down_window_s=SHORT_WINDOW_S)
    short_name = f"tidal-window-{short_cfg.scale_down_window_s:g}s"
    fleet = FleetConfig(cold_start_s=args.cold_start_s, tick_s=auto.interval_s, slots=args.slots)
    n0 = initial_fleet(trace, args.slots)
    sm_target = args.sagemaker_target or auto.acceptable_wait_s / mean_run

    keda = Keda(list_length=args.keda_list_length)
    sagemaker = SageMaker(target=sm_target)
    dynamic: list[Controller] = [
        Tidal(tidal_cfg, auto.interval_s),
        Tidal(default_cfg, auto.interval_s, name="tidal-default-mean-run"),
        Tidal(short_cfg, auto.interval_s, name=short_name),
        keda,
        sagemaker,
    ]
    outcomes = {c.name: simulate(trace, c, n0, fleet) for c in dynamic}
    target_p95 = _p95(outcomes["tidal"])

    n_static, outcomes["static-peak"], static_steps = static_search(trace, fleet, target_p95)
    bound = oracle.lower_bound(trace, args.oracle_interval_s, target_p95, args.slots)
    plan = oracle.feasible_plan(trace, args.oracle_interval_s, target_p95, args.slots)
    schedule = Schedule(
        plan, args.oracle_interval_s, lead_s=args.cold_start_s + auto.interval_s, name="oracle-schedule"
    )
    outcomes["oracle-schedule"] = simulate(trace, schedule, plan[0], fleet)

    bound_h = bound.bound_gpu_s / 3600
    tidal_h = outcomes["tidal"].gpu_s / 3600
    policies = {}
    for name, o in outcomes.items():
        rep = _report(o)
        rep["meets_tidal_p95"] = _p95(o) <= target_p95 + 1e-9
        rep["gpu_hours_vs_tidal"] = ratio(rep["gpu_hours"], tidal_h)
        rep["gpu_hours_vs_oracle_bound"] = ratio(rep["gpu_hours"], bound_h)
        policies[name] = rep

    return {
        "headline": {
            "target_p95_wait_s": target_p95,
            "oracle_bound_gpu_hours": bound_h,
            "gpu_hours": {n: p["gpu_hours"] for n, p in policies.items()},
            "p95_wait_s": {n: p["wait_s"]["p95"] for n, p in policies.items()},
            "tidal_vs_oracle_bound": ratio(tidal_h, bound_h),
            "tidal_vs_static_peak": ratio(tidal_h, policies["static-peak"]["gpu_hours"]),
        },
        "policies": policies,
        "static_peak": {"workers": n_static, "search": static_steps},
        "oracle": {
            "bound_gpu_hours": bound_h,
            "knapsack_dual_gpu_hours": bound.dual_gpu_s / 3600,
            "work_gpu_hours": bound.work_gpu_s / 3600,
            "binding": "work" if bound.work_gpu_s >= bound.dual_gpu_s else "knapsack",
            "late_jobs_allowed": bound.late_allowed,
            "interval_s": args.oracle_interval_s,
            "schedule": plan,
        },
        "config": {
            "trace": {"path": str(args.trace), "window_s": window, **describe(trace)},
            "cold_start_s": args.cold_start_s,
            "tick_s": fleet.tick_s,
            "slots": args.slots,
            "dispatch_policy": fleet.dispatch_policy,
            "initial_workers": n0,
            "tidal": asdict(tidal_cfg),
            "tidal_default_mean_run": asdict(default_cfg),
            "tidal_short_window": {"name": short_name, **asdict(short_cfg)},
            "acceptable_wait_s": auto.acceptable_wait_s,
            "keda": {k: v for k, v in asdict(keda).items() if not k.startswith("_")},
            "sagemaker": {k: v for k, v in asdict(sagemaker).items() if not k.startswith("_")},
        },
        "plot": plot(outcomes, args.out / "autoscale.png"),
    }
