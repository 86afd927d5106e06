"""fetch_instance_id against a local stand-in for the EC2 metadata service that enforces IMDSv2."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from worker.instance_id import fetch_instance_id

TOKEN = "AQAEAtoken=="
INSTANCE_ID = "i-0abc1234def567890"


class Imds(BaseHTTPRequestHandler):
    """PUT /latest/api/token hands out TOKEN; GETs without it are refused, as with HttpTokens=required."""

    seen: list[tuple[str, str, str | None]] = []

    def do_PUT(self) -> None:
        self.seen.append(("PUT", self.path, self.headers.get("X-aws-ec2-metadata-token-ttl-seconds")))
        if self.path != "/latest/api/token" or not self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
            self._reply(400, b"")
            return
        self._reply(200, TOKEN.encode())

    def do_GET(self) -> None:
        self.seen.append(("GET", self.path, self.headers.get("X-aws-ec2-metadata-token")))
        if self.headers.get("X-aws-ec2-metadata-token") != TOKEN:
            self._reply(401, b"")
        elif self.path == "/latest/meta-data/instance-id":
            self._reply(200, INSTANCE_ID.encode())
        else:
            self._reply(404, b"")

    def _reply(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep test output clean


class NoTokens(Imds):
    """An IMDSv1-only service: the token endpoint does not exist."""

    def do_PUT(self) -> None:
        self._reply(404, b"")


def _serve(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def imds() -> Iterator[str]:
    Imds.seen = []
    yield from _serve(Imds)


@pytest.fixture
def imds_v1_only() -> Iterator[str]:
    yield from _serve(NoTokens)


def test_reads_the_instance_id_with_a_session_token(imds: str) -> None:
    assert fetch_instance_id(imds) == INSTANCE_ID
    assert Imds.seen == [
        ("PUT", "/latest/api/token", "60"),
        ("GET", "/latest/meta-data/instance-id", TOKEN),
    ]


def test_the_stand_in_refuses_tokenless_gets(imds: str) -> None:
    """Guards the test above: an IMDSv1-style client would get nothing from this server."""
    import urllib.error
    import urllib.request

    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(f"{imds}/latest/meta-data/instance-id", timeout=1)
    assert err.value.code == 401
    err.value.close()


def test_no_token_endpoint_means_none(imds_v1_only: str) -> None:
    assert fetch_instance_id(imds_v1_only) is None


def test_off_ec2_it_returns_none_quickly() -> None:
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.monotonic()
    assert fetch_instance_id(f"http://127.0.0.1:{port}", timeout_s=0.5) is None
    assert time.monotonic() - started < 1.0


def test_a_silent_service_times_out_to_none() -> None:
    with socket.socket() as listener:  # accepts connections, never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        started = time.monotonic()
        assert fetch_instance_id(f"http://127.0.0.1:{port}", timeout_s=0.3) is None
        assert time.monotonic() - started < 1.5
