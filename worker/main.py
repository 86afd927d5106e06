"""``tidal worker --model NAME [--gpus auto|none|0,1 | --gpu N] [--weight W] [--slots S]``.

The model's settings come from the config file when it names the model, else from the model
registry in Redis, so ``REDIS_URL`` and ``--model`` are all a worker needs. A model that
cannot run here (unknown, or its handler does not import) exits with ``EXIT_CONFIG`` (78),
after telling the registry why.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket

from core.errors import ConfigError
from core.settings import Settings
from core.store import Store
from worker.exit_codes import EXIT_CONFIG
from worker.instance_id import resolve_instance_id
from worker.model_source import Resolved, report, resolve

log = logging.getLogger("tidal.worker")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="model name (from tidal.toml, else from the model registry)")
    p.add_argument("--gpu", default=None, help="one worker pinned to this GPU (index or UUID)")
    p.add_argument("--gpus", default=os.environ.get("TIDAL_GPUS", "none"),
                   help="'auto': one worker per GPU that nvidia-smi -L lists, each pinned with "
                        "CUDA_VISIBLE_DEVICES; a list such as '0,1'; 'none' (default): one unpinned worker")
    p.add_argument("--weight", type=float, default=None, help="dispatch weight (default: the model's)")
    p.add_argument("--slots", type=int, default=None, help="jobs run at once (default: the model's)")
    p.add_argument("--instance-id", default=os.environ.get("TIDAL_INSTANCE_ID", ""),
                   help="cloud instance id; 'auto' asks EC2's metadata service (IMDSv2)")


def _child_args(args: argparse.Namespace, instance_id: str) -> list[str]:
    out = ["--log-level", args.log_level]
    if args.config:
        out += ["--config", args.config]
    out += ["worker", "--model", args.model, "--gpus", "none", "--instance-id", instance_id]
    if args.weight is not None:
        out += ["--weight", repr(args.weight)]
    if args.slots is not None:
        out += ["--slots", str(args.slots)]
    return out


def run(args: argparse.Namespace, settings: Settings, redis_url: str) -> int:
    if (args.slots is not None and args.slots < 1) or (args.weight is not None and args.weight <= 0):
        log.error("--slots must be >= 1 and --weight > 0")
        return 2
    instance_id = resolve_instance_id(args.instance_id)
    where = instance_id or socket.gethostname()
    try:
        resolved = asyncio.run(_resolve(args.model, settings, redis_url, where))
    except ConfigError as exc:
        log.error("%s", exc)
        return EXIT_CONFIG
    log.info("model %s: settings from the %s", args.model, resolved.source)

    if args.gpu is None:
        from core.gpus import choose

        gpus = choose(args.gpus)
        if len(gpus) > 1:
            from worker.per_gpu import child_argv, run_per_gpu

            log.info("one worker per GPU: %s", ", ".join(gpus))
            return run_per_gpu(gpus, child_argv(_child_args(args, instance_id)))
        gpu = gpus[0] if gpus else None
    else:
        gpu = args.gpu
    if gpu is not None:
        # Before the handler loads, so CUDA sees only this GPU (as cuda:0).
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    # Pinned by whoever started us (the local provider), it is recorded all the same.
    return _serve(args, resolved, redis_url, instance_id, os.environ.get("CUDA_VISIBLE_DEVICES", ""))


async def _resolve(model: str, settings: Settings, redis_url: str, where: str) -> Resolved:
    store = Store.from_url(redis_url)
    try:
        try:
            return await resolve(model, settings, store)
        except ConfigError as exc:
            await report(store, model, where, str(exc), final=True)
            raise
    finally:
        await store.close()


def _serve(args: argparse.Namespace, resolved: Resolved, redis_url: str, instance_id: str, gpu: str) -> int:
    from worker.handler import load_handler
    from worker.runtime import Worker, WorkerIdentity

    cfg = resolved.spec.model
    where = instance_id or socket.gethostname()
    try:
        handler = load_handler(cfg.handler, cfg.options)
    except ConfigError as exc:
        log.error("%s", exc)
        asyncio.run(_report(redis_url, args.model, where, str(exc), final=True))
        return EXIT_CONFIG
    except ImportError as exc:
        # load() needs a package that is not installed (the model's dependencies): no restart helps.
        log.error("model %s: the handler's load() failed: %s", args.model, exc)
        asyncio.run(_report(redis_url, args.model, where, f"load() failed: {type(exc).__name__}: {exc}",
                            final=True))
        return EXIT_CONFIG
    except Exception as exc:
        # load() failed: perhaps for good (weights missing), perhaps not (GPU still starting).
        # Reported, then exit as a crash so systemd tries again.
        log.exception("model %s: the handler's load() failed", args.model)
        asyncio.run(_report(redis_url, args.model, where, f"load() failed: {type(exc).__name__}: {exc}",
                            final=False))
        return 1
    identity = WorkerIdentity.new(args.model, cfg.version, args.weight or cfg.weight, args.slots or cfg.slots,
                                  instance_id, gpu)

    async def main() -> None:
        store = Store.from_url(redis_url, result_ttl_s=resolved.spec.result_ttl_s)
        worker = Worker(store, identity, handler, resolved.spec.worker)
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


async def _report(redis_url: str, model: str, where: str, error: str, *, final: bool) -> None:
    store = Store.from_url(redis_url)
    try:
        await report(store, model, where, error, final=final)
    finally:
        await store.close()
