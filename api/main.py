"""``tidal api``: serve the HTTP API with uvicorn."""

from __future__ import annotations

import argparse

import uvicorn

from api.app import create_app
from core.settings import Settings


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default=None)
    p.add_argument("--port", type=int, default=None)


def run(args: argparse.Namespace, settings: Settings, redis_url: str) -> int:
    settings.redis.url = redis_url
    uvicorn.run(create_app(settings), host=args.host or settings.api.host, port=args.port or settings.api.port,
                log_level="warning", access_log=False)
    return 0
