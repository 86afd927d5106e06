"""fetch_instance_id against a local stand-in for the EC2 metadata service that enforces IMDSv2."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from tests.aws import imds
from worker.instance_id import fetch_instance_id

INSTANCE_ID = "i-0abc1234def567890"


@pytest.fixture
def service() -> imds.Instance:
    return imds.Instance(INSTANCE_ID, {})


@pytest.fixture
def url(service: imds.Instance) -> Iterator[str]:
    with imds.serve(service) as base:
        yield base


def test_reads_the_instance_id_with_a_session_token(url: str, service: imds.Instance) -> None:
    assert fetch_instance_id(url) == INSTANCE_ID
    assert service.seen == [
        ("PUT", "/latest/api/token", "60"),
        ("GET", "/latest/meta-data/instance-id", imds.TOKEN),
    ]


def test_the_metadata_address_can_be_overridden_for_a_stand_in(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", url)
    assert fetch_instance_id() == INSTANCE_ID


def test_the_stand_in_refuses_tokenless_gets(url: str) -> None:
    """Guards the test above: an IMDSv1-style client would get nothing from this server."""
    import urllib.error
    import urllib.request

    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(f"{url}/latest/meta-data/instance-id", timeout=1)
    assert err.value.code == 401
    err.value.close()


def test_no_token_endpoint_means_none(service: imds.Instance, url: str) -> None:
    service.v1_only = True
    assert fetch_instance_id(url) is None


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
