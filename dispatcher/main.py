"""``tidal dispatcher``: run one dispatcher process (several may run at once)."""

from __future__ import annotations

import argparse
import asyncio
import signal

from core.settings import Settings
from core.store import Store
from dispatcher.service import Dispatcher


def add_arguments(p: argparse.ArgumentParser) -> None:
    del p


def run(args: argparse.Namespace, settings: Settings, redis_url: str) -> int:
    async def main() -> None:
        store = Store.from_url(redis_url, result_ttl_s=settings.api.result_ttl_s)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            await Dispatcher(store, settings).run(stop)
        finally:
            await store.close()

    asyncio.run(main())
    return 0
