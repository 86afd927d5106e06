"""`tidal autoscale --once` ticks (autoscaler.loop.run_once): the EC2 provider on moto, state in Redis."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import redis

from autoscaler.aws_ec2 import AwsEc2Provider
from autoscaler.loop import run_once
from core.keys import AUTOSCALER_STATE
from core.settings import Settings
from core.store import Store
from tests.aws.conftest import TEMPLATE_NAME, Network, RunInstancesFaults, Sleeps


def _tick(redis_url: str, provider: AwsEc2Provider, settings: Settings) -> str:
    async def go() -> str:
        store = Store.from_url(redis_url)
        try:
            return (await run_once(store, provider, settings)).status
        finally:
            await store.close()

    return asyncio.run(go())


def test_cron_ticks_launch_min_workers_once_and_carry_unavailable_pairs_in_redis(
    redis_url: str,
    r: redis.Redis,
    ec2: Any,
    network: Network,
    faults: RunInstancesFaults,
    sleeps: Sleeps,
) -> None:
    subnet = network.subnets[0]
    settings = Settings.model_validate(
        {
            "models": {"echo": {"handler": "worker.handlers.echo:Echo", "min_workers": 2}},
            "autoscaler": {
                "enabled": True,
                "provider": "aws-ec2",
                "aws": {
                    "launch_template_name": TEMPLATE_NAME,
                    "instance_types": ["p4d.24xlarge", "g5.xlarge"],
                    "subnet_ids": [subnet],
                },
            },
        }
    )
    faults.unavailable = {("p4d.24xlarge", subnet)}

    def fresh_provider() -> AwsEc2Provider:  # each cron run is a new process
        return AwsEc2Provider(ec2, settings.autoscaler.aws, now=time.time, sleep=sleeps)

    first = fresh_provider()
    assert _tick(redis_url, first, settings) == "done"
    launched = first.list_instances("echo")
    assert len(launched) == 2
    assert {i.instance_type for i in launched} == {"g5.xlarge"}
    assert faults.offerings() == [("p4d.24xlarge", subnet), ("g5.xlarge", subnet)]
    assert '"p4d.24xlarge"' in (r.get(AUTOSCALER_STATE) or "")

    faults.sent.clear()
    second = fresh_provider()
    assert _tick(redis_url, second, settings) == "done"
    assert faults.sent == []  # the instances exist: nothing launched twice
    assert [(e["instance_type"], e["subnet"]) for e in second.export_state()["unavailable"]] == [
        ("p4d.24xlarge", subnet)
    ]
