"""The aws-ec2 provider: EC2 instances launched from a launch template, one worker per GPU on each.

Instances are found again only by their tags (``tidal:managed=true``, ``tidal:pool``), so a
fresh autoscaler process (one per cron tick) needs no memory of what it launched. The one
piece of state worth carrying between ticks, which (instance type, subnet) pairs recently
lacked capacity, is exposed through :meth:`AwsEc2Provider.export_state` and
:meth:`AwsEc2Provider.import_state`.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import partial
from typing import Any, Final, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from autoscaler.aws_errors import NOT_FOUND_CODES, error_code, translate
from autoscaler.aws_instance_types import InstanceTypes
from autoscaler.aws_launch_spec import LaunchSpec, resolve
from autoscaler.aws_retry import Backoff
from autoscaler.provider import Instance, InstanceState
from autoscaler.unavailable import UnavailableOfferings
from core.errors import CapacityError, ConfigError
from core.settings import AwsSettings, Settings

TAG_MANAGED: Final = "tidal:managed"
TAG_POOL: Final = "tidal:pool"
TAG_MODEL: Final = "tidal:model"
TAG_LAUNCH_TOKEN: Final = "tidal:launch-token"

_STATES: Final[dict[str, InstanceState]] = {
    "pending": "pending",
    "running": "running",
    "stopping": "stopping",
    # A stopped instance runs no worker but still exists (and costs its volumes); the
    # autoscaler should see it and terminate it, so it is reported like one stopping.
    "stopped": "stopping",
    "shutting-down": "terminated",
    "terminated": "terminated",
}
_LIVE_STATES: Final = ["pending", "running", "stopping", "stopped"]
_FILTER_VALUES_MAX: Final = 200  # EC2 rejects longer value lists in one filter


class Ec2Client(Protocol):
    """The part of boto3's EC2 client this provider uses."""

    def run_instances(self, **kwargs: Any) -> dict[str, Any]: ...

    def describe_instances(self, **kwargs: Any) -> dict[str, Any]: ...

    def terminate_instances(self, **kwargs: Any) -> dict[str, Any]: ...

    def describe_instance_types(self, **kwargs: Any) -> dict[str, Any]: ...

    def describe_launch_template_versions(self, **kwargs: Any) -> dict[str, Any]: ...


def make_ec2_client(aws: AwsSettings) -> Ec2Client:
    """A boto3 EC2 client with botocore's own retries off: :class:`Backoff` is the one retry policy."""
    import boto3
    from botocore.config import Config

    config = Config(
        retries={"total_max_attempts": 1},
        connect_timeout=aws.api_timeout_s,
        read_timeout=aws.api_timeout_s,
    )
    client: Ec2Client = boto3.client(
        "ec2", region_name=aws.region, endpoint_url=aws.endpoint_url, config=config
    )
    return client


def client_token(token: str, instance_type: str | None, subnet: str | None) -> str:
    """RunInstances' ClientToken (at most 64 ASCII characters) for one offering of one launch.

    It differs per offering because EC2 rejects a reused token whose parameters changed.
    """
    raw = f"{token}\0{instance_type or ''}\0{subnet or ''}".encode()
    return hashlib.sha256(raw).hexdigest()


class AwsEc2Provider:
    name = "aws-ec2"

    def __init__(
        self,
        ec2: Ec2Client,
        aws: AwsSettings,
        *,
        now: Callable[[], float],
        sleep: Callable[[float], None],
        rand: Callable[[], float] = random.random,
    ) -> None:
        self._ec2 = ec2
        self._aws = aws
        self._unavailable = UnavailableOfferings(aws.unavailable_ttl_s, now)
        self._backoff = Backoff(
            sleep=sleep,
            max_attempts=aws.max_attempts,
            base_s=aws.backoff_base_s,
            cap_s=aws.backoff_cap_s,
            rand=rand,
        )
        self._types = InstanceTypes(ec2, self._backoff.call)

    @classmethod
    def from_settings(cls, settings: Settings) -> AwsEc2Provider:
        """The provider for ``settings``; every model must resolve to a launch template."""
        aws = settings.autoscaler.aws
        for pool in aws.pools:
            if pool not in settings.models:
                raise ConfigError(f"autoscaler.aws.pools.{pool}: no model named {pool!r}")
        for model in settings.models:
            resolve(aws, model)
        return cls(make_ec2_client(aws), aws, now=time.time, sleep=time.sleep)

    def export_state(self) -> dict[str, Any]:
        """JSON-serialisable memory to hand to :meth:`import_state` in the next process."""
        return {"unavailable": self._unavailable.to_json()}

    def import_state(self, state: Mapping[str, Any]) -> None:
        self._unavailable.load_json(state.get("unavailable"))

    def list_instances(self, pool: str | None = None) -> list[Instance]:
        filters = [
            {"Name": f"tag:{TAG_MANAGED}", "Values": ["true"]},
            {"Name": "instance-state-name", "Values": _LIVE_STATES},
        ]
        if pool is not None:
            filters.append({"Name": f"tag:{TAG_POOL}", "Values": [pool]})
        return self._instances(list(self._describe(filters)))

    def _instances(self, described: list[dict[str, Any]], pool: str | None = None) -> list[Instance]:
        self._types.learn(d.get("InstanceType") for d in described)
        return [_instance(d, self._types.workers(d.get("InstanceType")), pool) for d in described]

    def launch(self, pool: str, workers: int, token: str) -> list[Instance]:
        """Start instances for ``workers`` workers on the first (instance type, subnet) with room for all.

        Each instance runs one worker per GPU of its type, so the count is worked out per
        offering: 3 workers are 3 ``g5.xlarge`` (1 GPU) or 1 ``g5.12xlarge`` (4 GPUs).

        All-or-nothing per offering (MinCount = MaxCount): one launch is one ClientToken, and
        a partial reservation could not be topped up under the same token. The autoscaler's
        steps are small, and it asks again next tick for whatever is still missing.
        """
        if workers <= 0:
            return []
        if not 0 < len(token) <= 256:
            raise ValueError("launch token must be 1 to 256 characters (an EC2 tag value)")
        earlier = self._launched_with(token)
        if earlier is not None:
            return earlier
        spec = resolve(self._aws, pool)
        failures: list[str] = []
        last: CapacityError | None = None
        for instance_type, subnet in spec.offerings():
            until = self._unavailable.until(instance_type, subnet)
            if until is not None:
                failures.append(
                    f"{instance_type or 'template type'}/{subnet or 'template subnet'}: "
                    f"skipped until {until:.0f}"
                )
                continue
            count = -(-workers // self._workers_on(instance_type, spec))
            try:
                return self._run(spec, pool, token, instance_type, subnet, count)
            except CapacityError as exc:
                self._unavailable.mark(instance_type, subnet)
                failures.append(str(exc))
                last = exc
        raise CapacityError(
            f"no capacity for pool {pool!r}: " + "; ".join(failures),
            instance_type=last.instance_type if last else None,
            subnet=last.subnet if last else None,
        )

    def _workers_on(self, instance_type: str | None, spec: LaunchSpec) -> int:
        """Workers one instance of ``instance_type`` (None: the launch template's) runs."""
        chosen = instance_type or self._types.template_type(spec.template)
        self._types.learn([chosen])
        return self._types.workers(chosen)

    def terminate(self, instance_ids: Sequence[str]) -> None:
        wanted = list(dict.fromkeys(instance_ids))
        for start in range(0, len(wanted), _FILTER_VALUES_MAX):
            chunk = wanted[start : start + _FILTER_VALUES_MAX]
            # Re-checked by tag so a stray id can never terminate something Tidal did not start.
            ours = [
                d["InstanceId"]
                for d in self._describe(
                    [
                        {"Name": "instance-id", "Values": chunk},
                        {"Name": f"tag:{TAG_MANAGED}", "Values": ["true"]},
                        {"Name": "instance-state-name", "Values": _LIVE_STATES},
                    ]
                )
            ]
            if ours:
                self._terminate(ours)

    def _terminate(self, ids: list[str]) -> None:
        try:
            self._backoff.call("TerminateInstances", lambda: self._ec2.terminate_instances(InstanceIds=ids))
        except ClientError as exc:
            # Gone between describe and terminate: the contract says that is not an error.
            if error_code(exc) in NOT_FOUND_CODES:
                return
            raise translate(exc, "TerminateInstances") from exc
        except BotoCoreError as exc:
            raise translate(exc, "TerminateInstances") from exc

    def _launched_with(self, token: str) -> list[Instance] | None:
        """Instances an earlier launch with ``token`` started (alive ones), or None if there was none.

        EC2's ClientToken already makes a retried RunInstances return the first one's
        instances, but only for the same offering; this also covers a retry that, with
        different unavailable pairs, would pick another offering.
        """
        found = list(
            self._describe(
                [
                    {"Name": f"tag:{TAG_LAUNCH_TOKEN}", "Values": [token]},
                    {"Name": f"tag:{TAG_MANAGED}", "Values": ["true"]},
                ]
            )
        )
        if not found:
            return None
        return [i for i in self._instances(found) if i.state != "terminated"]

    def _run(
        self,
        spec: LaunchSpec,
        pool: str,
        token: str,
        instance_type: str | None,
        subnet: str | None,
        count: int,
    ) -> list[Instance]:
        tags = [
            {"Key": TAG_MANAGED, "Value": "true"},
            {"Key": TAG_POOL, "Value": pool},
            {"Key": TAG_MODEL, "Value": pool},
            {"Key": TAG_LAUNCH_TOKEN, "Value": token},
            {"Key": "Name", "Value": f"tidal-{pool}"},
        ]
        params: dict[str, Any] = {
            "LaunchTemplate": dict(spec.template),
            "MinCount": count,
            "MaxCount": count,
            "ClientToken": client_token(token, instance_type, subnet),
            "TagSpecifications": [{"ResourceType": "instance", "Tags": tags}],
        }
        if instance_type is not None:
            params["InstanceType"] = instance_type
        if subnet is not None:
            params["SubnetId"] = subnet
        if spec.spot:
            params["InstanceMarketOptions"] = {
                "MarketType": "spot",
                "SpotOptions": {"SpotInstanceType": "one-time", "InstanceInterruptionBehavior": "terminate"},
            }
        try:
            reply = self._backoff.call("RunInstances", lambda: self._ec2.run_instances(**params))
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, "RunInstances", instance_type=instance_type, subnet=subnet) from exc
        return self._instances(reply.get("Instances", []), pool)

    def _describe(self, filters: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        """Every instance matching ``filters``, following pagination."""
        next_token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Filters": filters, "MaxResults": 1000}
            if next_token:
                kwargs["NextToken"] = next_token
            try:
                page = self._backoff.call(
                    "DescribeInstances", partial(self._ec2.describe_instances, **kwargs)
                )
            except (ClientError, BotoCoreError) as exc:
                raise translate(exc, "DescribeInstances") from exc
            for reservation in page.get("Reservations", []):
                yield from reservation.get("Instances", [])
            next_token = page.get("NextToken")
            if not next_token:
                return


def _instance(d: Mapping[str, Any], capacity: int, pool: str | None = None) -> Instance:
    tags = {t["Key"]: t["Value"] for t in d.get("Tags", [])}
    return Instance(
        id=d["InstanceId"],
        pool=pool if pool is not None else tags.get(TAG_POOL, ""),
        state=_STATES.get(d.get("State", {}).get("Name", "pending"), "pending"),
        launched_at=d["LaunchTime"].timestamp(),
        instance_type=d.get("InstanceType"),
        subnet=d.get("SubnetId"),
        capacity=capacity,
    )
