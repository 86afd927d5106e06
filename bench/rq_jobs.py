"""The rq baseline's job functions and worker entry point (``python -m bench.rq_jobs URL QUEUE``)."""

from __future__ import annotations

import sys
import time
from typing import Any

import redis
from rq import Queue
from rq.serializers import JSONSerializer
from rq.worker import SimpleWorker


def noop(payload: Any) -> Any:
    return payload


def sleep_ms(ms: float) -> dict[str, float]:
    time.sleep(ms / 1000)
    return {"slept_ms": ms}


def main(argv: list[str]) -> int:
    url, queue = argv
    conn = redis.Redis.from_url(url)
    worker = SimpleWorker([Queue(queue, connection=conn, serializer=JSONSerializer)], connection=conn,
                          serializer=JSONSerializer)
    worker.work(logging_level="WARNING", with_scheduler=False)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
