"""This machine's EC2 instance id, read from the instance metadata service with IMDSv2.

IMDSv2 first PUTs for a session token and then sends it with every GET; the launch
template requires it (``HttpTokens: required``), so a tokenless IMDSv1 GET would be refused.

The address is the link-local one unless ``AWS_EC2_METADATA_SERVICE_ENDPOINT`` (the AWS SDKs'
own override, which the user data's ``curl`` honours too) says otherwise: production never
sets it; the boot-path test points it at a stand-in on loopback.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request

TOKEN_TTL_S = 60  # the token is used once, right away
DEFAULT_ENDPOINT = "http://169.254.169.254"


def endpoint() -> str:
    return os.environ.get("AWS_EC2_METADATA_SERVICE_ENDPOINT") or DEFAULT_ENDPOINT


def resolve_instance_id(value: str) -> str:
    """``value`` itself, or for ``auto`` the id the metadata service gives ("" off EC2)."""
    if value != "auto":
        return value
    return fetch_instance_id() or ""


def fetch_instance_id(base_url: str | None = None, timeout_s: float = 1.0) -> str | None:
    """The instance id, or None when there is no metadata service (not on EC2) or it says no.

    ``timeout_s`` bounds each of the two requests; off EC2 the link-local address is
    unrouted or refuses, so this returns None within about that time.
    """
    base = (base_url or endpoint()).rstrip("/")
    # The metadata service is link-local: an HTTP(S)_PROXY from the environment must not see it.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        put = urllib.request.Request(
            f"{base}/latest/api/token",
            method="PUT",
            headers={"X-aws-ec2-metadata-token-ttl-seconds": str(TOKEN_TTL_S)},
        )
        with opener.open(put, timeout=timeout_s) as reply:
            token = reply.read().decode("ascii").strip()
        get = urllib.request.Request(
            f"{base}/latest/meta-data/instance-id", headers={"X-aws-ec2-metadata-token": token}
        )
        with opener.open(get, timeout=timeout_s) as reply:
            instance_id = reply.read().decode("ascii").strip()
    except urllib.error.HTTPError as exc:
        exc.close()  # it holds the open response
        return None
    except (OSError, UnicodeDecodeError):
        # URLError, timeouts and refused connections are all OSErrors.
        return None
    return instance_id if instance_id.startswith("i-") else None
