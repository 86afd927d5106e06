"""A TCP proxy in front of Redis that fails on demand, for tests of what a network fault does.

``cut()`` drops every connection and refuses new ones until ``restore()``; ``swallow_reply()``
lets one request through to the server, waits for its answer, and drops the connection
instead of delivering it: the command was applied, its reply lost.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from dataclasses import dataclass, field
from urllib.parse import urlparse


@dataclass
class _Trap:
    request_has: tuple[bytes, ...] = ()
    reply_has: bytes | None = None
    sprung: threading.Event = field(default_factory=threading.Event)


@dataclass
class _Pair:
    client: socket.socket
    server: socket.socket
    trap: _Trap | None = None  # set: the next reply from the server is lost

    def close(self) -> None:
        for s in (self.client, self.server):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()


class FaultyProxy:
    def __init__(self, target_url: str):
        target = urlparse(target_url)
        self.target = (target.hostname or "127.0.0.1", target.port or 6379)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"redis://127.0.0.1:{self._listener.getsockname()[1]}"
        self._lock = threading.Lock()
        self._pairs: list[_Pair] = []
        self._down = False
        self._trap: _Trap | None = None
        self.refused = 0
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def cut(self) -> None:
        with self._lock:
            self._down = True
            pairs, self._pairs = self._pairs, []
        for p in pairs:
            p.close()

    def restore(self) -> None:
        with self._lock:
            self._down = False

    def swallow_reply(self, *, request_has: tuple[bytes, ...] = (), reply_has: bytes | None = None
                      ) -> threading.Event:
        """Lose the reply to the next request holding every ``request_has`` (or the next reply holding
        ``reply_has``); the returned event is set once it has been lost."""
        trap = _Trap(request_has, reply_has)
        with self._lock:
            self._trap = trap
        return trap.sprung

    def close(self) -> None:
        self._closed = True
        self.cut()
        self._listener.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                down = self._down
            if down:
                self.refused += 1
                client.close()
                continue
            try:
                server = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            pair = _Pair(client, server)
            with self._lock:
                self._pairs.append(pair)
            threading.Thread(target=self._pump, args=(pair, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(pair, False), daemon=True).start()

    def _pump(self, pair: _Pair, upstream: bool) -> None:
        src, dst = (pair.client, pair.server) if upstream else (pair.server, pair.client)
        try:
            while data := src.recv(65536):
                with self._lock:
                    trap = self._trap
                    if trap is not None and pair.trap is None and (
                        (upstream and trap.request_has and all(m in data for m in trap.request_has))
                        or (not upstream and trap.reply_has is not None and trap.reply_has in data)
                    ):
                        pair.trap, self._trap = trap, None
                if not upstream and pair.trap is not None:
                    # The server has answered, so the command ran; the client never hears of it.
                    pair.trap.sprung.set()
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            pair.close()
            with self._lock:
                if pair in self._pairs:
                    self._pairs.remove(pair)
