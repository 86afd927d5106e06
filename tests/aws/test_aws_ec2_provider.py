"""AwsEc2Provider against moto's EC2, with capacity and throttling faults injected client-side."""

from __future__ import annotations

import json
from typing import Any

import pytest

from autoscaler.aws_ec2 import AwsEc2Provider, client_token
from autoscaler.provider import Provider
from core.errors import CapacityError, ThrottledError
from tests.aws.conftest import TEMPLATE_NAME, Clock, Network, ProviderFactory, RunInstancesFaults, Sleeps


def _tags(ec2: Any, instance_id: str) -> dict[str, str]:
    d = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]
    return {t["Key"]: t["Value"] for t in d.get("Tags", [])}


def _all_instances(ec2: Any) -> list[dict[str, Any]]:
    return [i for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]]


def test_launch_uses_the_template_and_tags_every_instance(
    ec2: Any, network: Network, make_provider: ProviderFactory, faults: RunInstancesFaults
) -> None:
    provider: Provider = make_provider()  # mypy checks that it implements the Protocol
    launched = provider.launch("echo", 2, token="tick-1")

    assert len(launched) == 2
    assert {i.pool for i in launched} == {"echo"}
    assert {i.state for i in launched} <= {"pending", "running"}
    assert {i.instance_type for i in launched} == {"t3.micro"}  # the template's
    for inst in launched:
        tags = _tags(ec2, inst.id)
        assert tags["tidal:managed"] == "true"
        assert tags["tidal:pool"] == "echo"
        assert tags["tidal:model"] == "echo"
        assert tags["tidal:launch-token"] == "tick-1"
        assert tags["aws:ec2launchtemplate:id"] == network.template_id
    (sent,) = faults.sent
    assert sent["LaunchTemplate.LaunchTemplateName"] == TEMPLATE_NAME
    assert sent["LaunchTemplate.Version"] == "$Default"
    assert sent["ClientToken"] == client_token("tick-1", None, None)
    assert (sent["MinCount"], sent["MaxCount"]) == ("2", "2")
    assert "InstanceMarketOptions.MarketType" not in sent


def test_launch_template_by_id_per_pool_and_spot(
    ec2: Any, network: Network, make_provider: ProviderFactory, faults: RunInstancesFaults
) -> None:
    provider = make_provider(
        pools={
            "llm": {"launch_template_id": network.template_id, "instance_types": ["g5.xlarge"], "spot": True}
        }
    )
    (inst,) = provider.launch("llm", 1, token="t")

    assert inst.instance_type == "g5.xlarge"
    (sent,) = faults.sent
    assert sent["LaunchTemplate.LaunchTemplateId"] == network.template_id
    assert sent["InstanceMarketOptions.MarketType"] == "spot"
    assert sent["InstanceMarketOptions.SpotOptions.InstanceInterruptionBehavior"] == "terminate"


def test_list_instances_finds_only_managed_ones_by_tag(
    ec2: Any, network: Network, make_provider: ProviderFactory
) -> None:
    provider = make_provider()
    echo = {i.id for i in provider.launch("echo", 2, token="a")}
    llm = {i.id for i in provider.launch("llm", 1, token="b")}
    ec2.run_instances(ImageId=network.ami, MinCount=1, MaxCount=1)  # someone else's

    assert {i.id for i in provider.list_instances()} == echo | llm
    assert {i.id for i in provider.list_instances("echo")} == echo
    assert [i.pool for i in provider.list_instances("llm")] == ["llm"]
    assert provider.list_instances("nothing") == []


def test_terminate_only_touches_managed_instances_and_ignores_unknown_ids(
    ec2: Any, network: Network, make_provider: ProviderFactory
) -> None:
    provider = make_provider()
    ours = [i.id for i in provider.launch("echo", 2, token="a")]
    stranger = ec2.run_instances(ImageId=network.ami, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]

    provider.terminate([*ours, stranger, "i-0123456789abcdef0", "not-an-id"])

    states = {i["InstanceId"]: i["State"]["Name"] for i in _all_instances(ec2)}
    assert {states[i] for i in ours} <= {"shutting-down", "terminated"}
    assert states[stranger] == "running"
    assert provider.list_instances() == []
    provider.terminate(ours)  # twice is fine


def test_same_token_twice_launches_once(
    ec2: Any, network: Network, make_provider: ProviderFactory, faults: RunInstancesFaults
) -> None:
    provider = make_provider()
    first = provider.launch("echo", 3, token="tick-7")
    again = make_provider().launch("echo", 3, token="tick-7")  # e.g. the cron run retried

    assert {i.id for i in again} == {i.id for i in first}
    assert len(faults.sent) == 1
    assert len(_all_instances(ec2)) == 3


def test_capacity_errors_fall_back_across_types_and_subnets(
    ec2: Any, network: Network, make_provider: ProviderFactory, faults: RunInstancesFaults
) -> None:
    a, b = network.subnets
    faults.unavailable = {("p4d.24xlarge", a), ("p4d.24xlarge", b), ("g5.xlarge", a)}
    provider = make_provider(instance_types=["p4d.24xlarge", "g5.xlarge"], subnet_ids=[a, b])

    (inst,) = provider.launch("llm", 1, token="t")

    assert (inst.instance_type, inst.subnet) == ("g5.xlarge", b)
    assert faults.offerings() == [
        ("p4d.24xlarge", a),
        ("p4d.24xlarge", b),
        ("g5.xlarge", a),
        ("g5.xlarge", b),
    ]
    remembered = {(e["instance_type"], e["subnet"]) for e in provider.export_state()["unavailable"]}
    assert remembered == faults.unavailable


@pytest.mark.parametrize("code", ["VcpuLimitExceeded", "Unsupported", "InsufficientInstanceCapacity"])
def test_no_capacity_anywhere_raises_capacity_error(
    code: str, network: Network, make_provider: ProviderFactory, faults: RunInstancesFaults
) -> None:
    a, b = network.subnets
    faults.capacity_code = code
    faults.unavailable = {("g5.xlarge", a), ("g5.xlarge", b)}
    provider = make_provider(instance_types=["g5.xlarge"], subnet_ids=[a, b])

    with pytest.raises(CapacityError, match=code) as err:
        provider.launch("llm", 1, token="t")
    assert (err.value.instance_type, err.value.subnet) == ("g5.xlarge", b)

    # Both pairs are now remembered: the next tick does not even ask.
    with pytest.raises(CapacityError, match="skipped until"):
        provider.launch("llm", 1, token="t2")
    assert len(faults.sent) == 2


def test_unavailable_pair_is_skipped_until_it_expires(
    clock: Clock, network: Network, make_provider: ProviderFactory, faults: RunInstancesFaults
) -> None:
    a = network.subnets[0]
    faults.unavailable = {("p4d.24xlarge", a)}
    provider = make_provider(instance_types=["p4d.24xlarge", "g5.xlarge"], subnet_ids=[a])

    assert provider.launch("llm", 1, token="t1")[0].instance_type == "g5.xlarge"
    assert faults.offerings() == [("p4d.24xlarge", a), ("g5.xlarge", a)]

    faults.sent.clear()
    faults.unavailable.clear()  # capacity is back, but the provider cannot know yet
    clock.advance(179)
    assert provider.launch("llm", 1, token="t2")[0].instance_type == "g5.xlarge"
    assert faults.offerings() == [("g5.xlarge", a)]

    faults.sent.clear()
    clock.advance(2)  # past the default 180 s
    assert provider.launch("llm", 1, token="t3")[0].instance_type == "p4d.24xlarge"
    assert faults.offerings() == [("p4d.24xlarge", a)]


def test_unavailable_memory_survives_a_new_process_through_json(
    clock: Clock, network: Network, make_provider: ProviderFactory, faults: RunInstancesFaults
) -> None:
    a = network.subnets[0]
    faults.unavailable = {("p4d.24xlarge", a)}
    settings: dict[str, Any] = {"instance_types": ["p4d.24xlarge", "g5.xlarge"], "subnet_ids": [a]}
    first = make_provider(**settings)
    first.launch("llm", 1, token="t1")
    stored = json.dumps(first.export_state())  # what the autoscaler keeps in Redis

    faults.sent.clear()
    second = make_provider(**settings)
    second.import_state(json.loads(stored))
    second.launch("llm", 1, token="t2")
    assert faults.offerings() == [("g5.xlarge", a)]


def test_throttled_call_is_retried_with_backoff_then_succeeds(
    ec2: Any, network: Network, make_provider: ProviderFactory, faults: RunInstancesFaults, sleeps: Sleeps
) -> None:
    faults.throttle_next = 2
    provider = make_provider(backoff_base_s=0.5, backoff_cap_s=20.0)

    (inst,) = provider.launch("echo", 1, token="t")

    assert len(faults.sent) == 3
    # rand() is pinned to 1.0, so each sleep is the top of its full-jitter range.
    assert sleeps.calls == [0.5, 1.0]
    assert [i["InstanceId"] for i in _all_instances(ec2)] == [inst.id]


def test_throttling_that_never_stops_raises_throttled_error(
    ec2: Any, network: Network, make_provider: ProviderFactory, faults: RunInstancesFaults, sleeps: Sleeps
) -> None:
    faults.throttle_next = 100
    provider = make_provider(max_attempts=4, backoff_base_s=1.0, backoff_cap_s=3.0)

    with pytest.raises(ThrottledError, match="RequestLimitExceeded"):
        provider.launch("echo", 1, token="t")

    assert len(faults.sent) == 4
    assert sleeps.calls == [1.0, 2.0, 3.0]  # capped
    assert _all_instances(ec2) == []


def test_launch_of_zero_does_nothing(make_provider: ProviderFactory, faults: RunInstancesFaults) -> None:
    assert make_provider().launch("echo", 0, token="t") == []
    assert faults.sent == []


def test_unknown_launch_template_is_a_provider_error_not_a_botocore_one(
    network: Network, make_provider: ProviderFactory
) -> None:
    from core.errors import ProviderError

    provider: AwsEc2Provider = make_provider(launch_template_name="no-such-template")
    with pytest.raises(ProviderError) as err:
        provider.launch("echo", 1, token="t")
    assert not isinstance(err.value, CapacityError | ThrottledError)
    assert "no-such-template" in str(err.value)


def test_unreachable_endpoint_is_a_provider_error(moto_url: str, clock: Clock, sleeps: Sleeps) -> None:
    """moto_url only for its dummy credentials: botocore must not look for real ones."""
    import socket

    from autoscaler.aws_ec2 import make_ec2_client
    from core.errors import ProviderError
    from core.settings import AwsSettings

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    aws = AwsSettings(
        region="us-east-1",
        endpoint_url=f"http://127.0.0.1:{port}",
        launch_template_name=TEMPLATE_NAME,
        api_timeout_s=1.0,
    )
    provider = AwsEc2Provider(make_ec2_client(aws), aws, now=clock, sleep=sleeps)

    with pytest.raises(ProviderError, match="DescribeInstances"):
        provider.list_instances()
    with pytest.raises(ProviderError):
        provider.terminate(["i-0123456789abcdef0"])


def test_workers_become_instances_by_the_gpus_of_the_type_that_has_room(
    network: Network, make_provider: ProviderFactory, faults: RunInstancesFaults
) -> None:
    provider = make_provider(instance_types=["g4dn.12xlarge", "g5.xlarge"], subnet_ids=[network.subnets[0]])
    launched = provider.launch("llm", 6, token="wide")
    assert [(i.instance_type, i.capacity) for i in launched] == [("g4dn.12xlarge", 4)] * 2  # 6 workers: 2 x 4 GPUs
    assert {i.capacity for i in provider.list_instances("llm")} == {4}

    faults.unavailable = {("g4dn.12xlarge", network.subnets[0])}
    fallback = provider.launch("llm", 3, token="narrow")
    assert [(i.instance_type, i.capacity) for i in fallback] == [("g5.xlarge", 1)] * 3  # 1 GPU each
    assert [(p["InstanceType"], p["MaxCount"]) for p in faults.sent[1:]] == [("g4dn.12xlarge", "1"), ("g5.xlarge", "3")]


def test_a_type_without_gpus_runs_one_worker(make_provider: ProviderFactory, network: Network) -> None:
    (inst,) = make_provider().launch("echo", 1, token="t")  # the template's t3.micro
    assert inst.capacity == 1
