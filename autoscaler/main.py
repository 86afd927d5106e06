"""``tidal autoscale``: the autoscaler as a loop, or one locked tick (``--once``) for cron."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from autoscaler.local_provider import LocalProvider
from autoscaler.loop import TickReport, run_loop, run_once
from autoscaler.provider import Provider
from core.errors import ConfigError
from core.settings import Settings
from core.store import Store


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--once", action="store_true", help="run one tick under the lock and exit (cron)")
    parser.add_argument(
        "--dry-run", action="store_true", help="print each model's decision and reason; change nothing"
    )
    parser.add_argument(
        "--provider", choices=("local", "aws-ec2"), default=None, help="default: [autoscaler] provider"
    )
    parser.add_argument(
        "--interval-s", type=float, default=None, help="seconds between ticks (default: interval_s)"
    )


def make_provider(name: str, settings: Settings, redis_url: str) -> Provider:
    if name == "aws-ec2":
        # Imported here so the local provider works without AWS configuration or boto3 start-up cost.
        from autoscaler.aws_ec2 import AwsEc2Provider

        return AwsEc2Provider.from_settings(settings)
    from core.gpus import choose

    return LocalProvider(
        settings.autoscaler.instances_dir,
        env={"REDIS_URL": redis_url},
        stop_grace_s=settings.autoscaler.stop_grace_s,
        gpus=choose(settings.autoscaler.local_gpus),
    )


def _print(report: TickReport) -> None:
    for line in report.lines():
        print(line, flush=True)


async def _main(args: argparse.Namespace, settings: Settings, redis_url: str, provider: Provider) -> int:
    store = Store.from_url(redis_url)
    try:
        if args.once:
            report = await run_once(store, provider, settings, dry_run=args.dry_run)
            if args.dry_run:
                _print(report)
            return 1 if report.status == "skipped" else 0
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await run_loop(
            store,
            provider,
            settings,
            stop,
            interval_s=args.interval_s,
            dry_run=args.dry_run,
            on_tick=_print if args.dry_run else None,
        )
        return 0
    finally:
        await store.close()


def run(args: argparse.Namespace, settings: Settings, redis_url: str = "") -> int:
    """Exit status: 0 when done (or another run held the lock), 1 when the tick was skipped."""
    url = redis_url or settings.redis.url
    if not url:
        raise ConfigError("the autoscaler needs REDIS_URL (or [redis] url) pointing at Tidal's Redis")
    if args.interval_s is not None and args.interval_s <= 0:
        print("tidal autoscale: --interval-s must be positive", file=sys.stderr)
        return 2
    provider = make_provider(args.provider or settings.autoscaler.provider, settings, url)
    return asyncio.run(_main(args, settings, url, provider))
