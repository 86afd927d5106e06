"""``tidal worker --model NAME [--gpu N] [--weight W] [--slots S]``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal

from core.settings import Settings
from core.store import Store

log = logging.getLogger("tidal.worker")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="model name from tidal.toml")
    p.add_argument("--gpu", type=int, default=None, help="GPU index; sets CUDA_VISIBLE_DEVICES")
    p.add_argument("--weight", type=float, default=None, help="dispatch weight (default: the model's)")
    p.add_argument("--slots", type=int, default=None, help="jobs run at once (default: the model's)")
    p.add_argument("--instance-id", default=os.environ.get("TIDAL_INSTANCE_ID", ""),
                   help="cloud instance id; 'auto' asks EC2's metadata service (IMDSv2)")


def _instance_id(value: str) -> str:
    if value != "auto":
        return value
    from worker.instance_id import fetch_instance_id

    return fetch_instance_id() or ""


def run(args: argparse.Namespace, settings: Settings, redis_url: str) -> int:
    from worker.handler import load_handler
    from worker.runtime import Worker, WorkerIdentity

    if args.model not in settings.models:
        log.error("unknown model %r; tidal.toml has %s", args.model, sorted(settings.models) or "none")
        return 2
    cfg = settings.models[args.model]
    if args.gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(args.gpu)
    slots = args.slots or cfg.slots
    if slots < 1 or (args.weight is not None and args.weight <= 0):
        log.error("--slots must be >= 1 and --weight > 0")
        return 2
    handler = load_handler(cfg.handler, cfg.options)
    identity = WorkerIdentity.new(args.model, cfg.version, args.weight or cfg.weight, slots,
                                  _instance_id(args.instance_id))

    async def main() -> None:
        store = Store.from_url(redis_url, result_ttl_s=settings.api.result_ttl_s)
        worker = Worker(store, identity, handler, settings.worker)
        loop = asyncio.get_running_loop()
        stops = 0
        drains: list[asyncio.Task[None]] = []

        def on_signal() -> None:
            nonlocal stops
            stops += 1
            if stops > 1:
                log.warning("second stop signal: exiting now; the dispatcher will re-queue running jobs")
                os._exit(1)
            drains.append(loop.create_task(worker.drain()))

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal)
        try:
            await worker.run()
        finally:
            await store.close()

    asyncio.run(main())
    return 0
