"""A stand-in for the EC2 instance metadata service, IMDSv2 only, on loopback.

It serves what an instance launched from Tidal's launch template reads: a session token
(``PUT /latest/api/token``), ``meta-data/instance-id``, the instance's tags
(``meta-data/tags/instance/<key>``, on with ``InstanceMetadataTags: enabled``), the spot
interruption notice (``meta-data/spot/instance-action``: 404 until one is set, as on EC2), and
the instance profile's credentials (``meta-data/iam/security-credentials/<role>``), which is
where boto3 on an instance gets its keys. Every GET without a valid token is refused (401), as
with ``HttpTokens: required``. Reached through ``AWS_EC2_METADATA_SERVICE_ENDPOINT``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOKEN = "AQAEAsandbox-token=="
ROLE = "tidal-WorkerRole-sandbox"


@dataclass
class Instance:
    instance_id: str
    tags: Mapping[str, str]
    spot_action: dict[str, str] | None = None  # e.g. {"action": "terminate", "time": "..."}
    v1_only: bool = False  # an IMDSv1-only service: no token endpoint
    # (method, path, the TTL header of a PUT or the token header of a GET), for tests to inspect
    seen: list[tuple[str, str, str | None]] = field(default_factory=list)


def _handler(inst: Instance) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_PUT(self) -> None:
            ttl = self.headers.get("X-aws-ec2-metadata-token-ttl-seconds")
            inst.seen.append(("PUT", self.path, ttl))
            if inst.v1_only:
                self._reply(404, "")
            elif self.path == "/latest/api/token" and ttl:
                self._reply(200, TOKEN)
            else:
                self._reply(400, "")

        def do_GET(self) -> None:
            token = self.headers.get("X-aws-ec2-metadata-token")
            inst.seen.append(("GET", self.path, token))
            if token != TOKEN:
                self._reply(401, "")
                return
            body = self._lookup(self.path.removeprefix("/latest/meta-data/"))
            self._reply(404, "") if body is None else self._reply(200, body)

        def _lookup(self, path: str) -> str | None:
            if path == "instance-id":
                return inst.instance_id
            if path == "tags/instance":
                return "\n".join(inst.tags)
            if path.startswith("tags/instance/"):
                return inst.tags.get(path.removeprefix("tags/instance/"))
            if path == "spot/instance-action":
                return json.dumps(inst.spot_action) if inst.spot_action else None
            if path == "iam/security-credentials/":
                return ROLE
            if path == f"iam/security-credentials/{ROLE}":
                return json.dumps({
                    "Code": "Success", "LastUpdated": "2026-01-01T00:00:00Z", "Type": "AWS-HMAC",
                    "AccessKeyId": "ASIASANDBOX", "SecretAccessKey": "sandbox", "Token": "sandbox",
                    "Expiration": "2099-01-01T00:00:00Z",
                })
            return None

        def _reply(self, status: int, body: str) -> None:
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            pass  # keep test output clean

    return Handler


@contextmanager
def serve(inst: Instance) -> Iterator[str]:
    """The base URL (``http://127.0.0.1:<port>``) of a metadata service for ``inst``."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(inst))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
