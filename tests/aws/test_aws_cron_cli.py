"""`tidal autoscale --once --provider aws-ec2` from cron, as a process, against moto's EC2.

A real `tidal worker --instance-id <id>` on this machine stands in for the worker each EC2
instance would boot (moto runs no user data), so the whole scale-out / drain / terminate
cycle is exercised.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from core.jobs import NewJob
from core.store import Store
from tests.aws.conftest import REGION, TEMPLATE_NAME, Network
from tests.procs import FAST, ROOT, Stack, wait_for

pytestmark = pytest.mark.timeout(180)

CONFIG = FAST + """
[autoscaler]
enabled = true
provider = "aws-ec2"
acceptable_wait_s = 1.0
scale_down_window_s = 0.0
idle_timeout_s = 1.0
[autoscaler.aws]
region = "{region}"
launch_template_name = "{template}"
[models.sleep]
handler = "worker.handlers.sleep:Sleep"
mean_run_s = 0.05
max_workers = 2
""".replace("{region}", REGION).replace("{template}", TEMPLATE_NAME)


def cron(stack: Stack) -> subprocess.CompletedProcess[str]:
    out = subprocess.run([sys.executable, "-m", "launcher.cli", "autoscale", "--once", "--provider", "aws-ec2"],
                         cwd=ROOT, env=stack.env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    return out


def managed(ec2: Any, states: tuple[str, ...] = ("pending", "running")) -> list[dict[str, Any]]:
    res = ec2.describe_instances(Filters=[{"Name": "tag:tidal:managed", "Values": ["true"]},
                                          {"Name": "instance-state-name", "Values": list(states)}])
    return [i for r in res["Reservations"] for i in r["Instances"]]


def test_cron_launches_tagged_instances_for_a_backlog_and_terminates_them_once_idle(
    redis_url: str, r: redis.Redis, ec2: Any, network: Network, tmp_path: Path
) -> None:
    stack = Stack(redis_url, tmp_path, CONFIG)
    try:
        stack.api()

        async def backlog() -> None:
            store = Store.from_url(redis_url)
            try:
                for _ in range(4):
                    job = NewJob(str(uuid.uuid4()), "sleep", "1", '{"ms": 100}', max_attempts=1)
                    await store.submit(job, max_queue_len=100, idempotency_key=None, now=time.time())
            finally:
                await store.close()

        asyncio.run(backlog())
        cron(stack)
        launched = managed(ec2)
        assert launched, "a backlog must launch instances"
        for inst in launched:
            tags = {t["Key"]: t["Value"] for t in inst["Tags"]}
            assert tags["tidal:managed"] == "true" and tags["tidal:pool"] == "sleep"
            assert tags["tidal:model"] == "sleep"
        cron(stack)  # a second run while they boot launches nothing new
        assert {i["InstanceId"] for i in managed(ec2)} == {i["InstanceId"] for i in launched}

        # The instances "boot": their workers register with their instance ids and run the backlog.
        stack.dispatcher()
        for inst in launched:
            stack.worker("sleep", "--instance-id", inst["InstanceId"])
        with httpx.Client(base_url=stack.url, timeout=10) as http:
            wait_for(lambda: http.get("/v1/models").json()["models"][0]["backlog"] == 0
                     and http.get("/v1/models").json()["models"][0]["in_flight"] == 0, what="backlog done")

        def all_terminated() -> bool:
            cron(stack)
            return not managed(ec2, ("pending", "running", "stopping", "stopped"))

        wait_for(all_terminated, timeout_s=60, what="idle instances terminated")
        assert {i["InstanceId"] for i in managed(ec2, ("terminated", "shutting-down"))} >= {
            i["InstanceId"] for i in launched
        }
    finally:
        stack.stop()
