"""AWS tests run against moto in server mode on 127.0.0.1; nothing reaches the internet.

One ThreadedMotoServer serves the whole session and is reset before each test. EC2 faults
(capacity, throttling) are injected on the client side with botocore ``before-send`` hooks,
which moto cannot produce itself.
"""

from __future__ import annotations

import logging
import os
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from moto.server import ThreadedMotoServer

from autoscaler.aws_ec2 import AwsEc2Provider, Ec2Client, make_ec2_client
from core.settings import AwsSettings

REGION = "us-east-1"
TEMPLATE_NAME = "tidal-worker"

_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    # moto otherwise loads hundreds of public AMIs after every reset, about a second each time.
    "MOTO_EC2_LOAD_DEFAULT_AMIS": "false",
}
_UNSET = ("AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_PROFILE", "AWS_REGION")


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    # Werkzeug logs every request moto serves; that is noise in a failing test's output.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    saved = {k: os.environ.get(k) for k in (*_ENV, *_UNSET, "AWS_ENDPOINT_URL")}
    os.environ.update(_ENV)
    for k in _UNSET:
        os.environ.pop(k, None)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    os.environ["AWS_ENDPOINT_URL"] = url
    try:
        yield url
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        server.stop()


@pytest.fixture
def aws(moto_url: str) -> str:
    """The moto endpoint, emptied of everything earlier tests created."""
    urllib.request.urlopen(urllib.request.Request(f"{moto_url}/moto-api/reset", method="POST")).close()
    return moto_url


@pytest.fixture
def ec2(aws: str) -> Any:
    # The provider's own client factory, so tests see its retry configuration (none in botocore).
    return make_ec2_client(AwsSettings(region=REGION))


@dataclass
class Network:
    vpc: str
    subnets: list[str]
    ami: str
    template_id: str


@pytest.fixture
def network(ec2: Any) -> Network:
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i}.0/24", AvailabilityZone=f"{REGION}{az}")["Subnet"][
            "SubnetId"
        ]
        for i, az in enumerate("ab")
    ]
    ami = ec2.register_image(Name="tidal-worker-test", RootDeviceName="/dev/xvda")["ImageId"]
    template = ec2.create_launch_template(
        LaunchTemplateName=TEMPLATE_NAME,
        LaunchTemplateData={
            "ImageId": ami,
            "InstanceType": "t3.micro",
            "MetadataOptions": {"HttpTokens": "required"},
        },
    )["LaunchTemplate"]["LaunchTemplateId"]
    return Network(vpc, subnets, ami, template)


class Clock:
    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.t = start

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


@dataclass
class Sleeps:
    calls: list[float] = field(default_factory=list)

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


ProviderFactory = Callable[..., AwsEc2Provider]


@pytest.fixture
def make_provider(ec2: Any, clock: Clock, sleeps: Sleeps) -> ProviderFactory:
    """``make_provider(**aws_settings)``: a provider on the shared client, clock and sleep."""

    def make(**overrides: Any) -> AwsEc2Provider:
        aws = AwsSettings(**{"region": REGION, "launch_template_name": TEMPLATE_NAME, **overrides})
        return AwsEc2Provider(ec2, aws, now=clock, sleep=sleeps, rand=lambda: 1.0)

    return make


def _error_response(request: AWSPreparedRequest, code: str, status: int) -> AWSResponse:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f"<Response><Errors><Error><Code>{code}</Code><Message>injected {code}</Message></Error></Errors>"
        "<RequestID>00000000-0000-0000-0000-000000000000</RequestID></Response>"
    ).encode()

    class Raw:
        def stream(self, **_: Any) -> Iterator[bytes]:
            yield body

    return AWSResponse(request.url, status, {"Content-Type": "text/xml"}, Raw())


@dataclass
class RunInstancesFaults:
    """Records every RunInstances sent and answers chosen ones with an EC2 error instead of moto."""

    unavailable: set[tuple[str | None, str | None]] = field(default_factory=set)
    capacity_code: str = "InsufficientInstanceCapacity"
    throttle_next: int = 0
    sent: list[dict[str, str]] = field(default_factory=list)

    def offerings(self) -> list[tuple[str | None, str | None]]:
        return [(p.get("InstanceType"), p.get("SubnetId")) for p in self.sent]

    def __call__(self, request: AWSPreparedRequest, **_: Any) -> AWSResponse | None:
        body = request.body.decode() if isinstance(request.body, bytes) else str(request.body or "")
        params = dict(urllib.parse.parse_qsl(body))
        self.sent.append(params)
        if self.throttle_next > 0:
            self.throttle_next -= 1
            return _error_response(request, "RequestLimitExceeded", 503)
        if (params.get("InstanceType"), params.get("SubnetId")) in self.unavailable:
            return _error_response(request, self.capacity_code, 500)
        return None  # send it on to moto


@pytest.fixture
def faults(ec2: Ec2Client) -> RunInstancesFaults:
    hook = RunInstancesFaults()
    ec2.meta.events.register("before-send.ec2.RunInstances", hook)  # type: ignore[attr-defined]
    return hook
