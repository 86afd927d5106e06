"""The boot path, run: user data from the CloudFormation-made launch template, executed in a sandbox instance.

``infra/tidal.yaml`` is deployed to moto; ``tidal autoscale --once`` launches an instance from
its launch template for a backlog; the instance's user data, as EC2 would hand it over, runs
unmodified in :class:`tests.aws.sandbox.Sandbox` against a stand-in metadata service that
knows that instance's id and tags. It installs Tidal and the model's package (an ``s3://``
wheel, fetched with the instance profile's credentials), reads ``REDIS_URL`` from moto's SSM,
and starts the unit, whose worker parent runs one worker per GPU. The workers must register
under the instance id the provider knows, run the job, and be drained and terminated by
``tidal autoscale --once`` once idle; the "instance" then shuts down and its workers leave.

The test prints the time from the launch to the first job's result (``-s`` shows it).
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
import redis

from core import keys
from tests.aws import imds
from tests.aws.conftest import REGION
from tests.aws.sandbox import Sandbox, model_wheel, tidal_wheel, unavailable
from tests.aws.test_aws_cron_cli import cron, managed
from tests.aws.test_aws_infra import deploy_stack
from tests.procs import Stack, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

INSTANCE_TYPE = "g7e.12xlarge"  # 2 GPUs in moto's instance type data
GPUS = ["GPU-7e000000-0000-4000-8000-000000000000", "GPU-7e000000-0000-4000-8000-000000000001"]
BUCKET = "tidal-models"
MODEL_PACKAGE = "tidal-boot-model"
MODEL_SOURCE = '''
import os


class Greeter:
    """A model package's handler: greets, and says which GPU its worker was pinned to."""

    def __init__(self, greeting: str = "Hello") -> None:
        self.greeting = greeting

    def load(self) -> None:
        pass

    def predict(self, input):
        return {"text": f"{self.greeting}, {input}!", "gpu": os.environ.get("CUDA_VISIBLE_DEVICES")}
'''

CONFIG = """
[api]
port = {port}
[worker]
# The defaults' TTL: on a loaded 2-core machine a tighter one can take a slow worker for dead.
heartbeat_interval_s = 0.5
heartbeat_ttl_s = 5.0
[dispatcher]
tick_s = 0.2
[autoscaler]
enabled = true
provider = "aws-ec2"
acceptable_wait_s = 1.0
scale_down_window_s = 0.0
idle_timeout_s = 1.0
boot_timeout_s = 600
[autoscaler.aws]
region = "{region}"
launch_template_name = "{template}"
instance_types = ["{instance_type}"]
subnet_ids = ["{subnet}"]
[models.greet]
handler = "tidal_boot_model:Greeter"
package = "s3://{bucket}/{wheel}"
version = "boot-1"
mean_run_s = 0.05
max_workers = 2
options = {{ greeting = "Hello" }}
"""


@pytest.fixture
def sandbox_ok() -> None:
    why = unavailable()
    if why:
        pytest.skip(why)


@pytest.fixture
def wheels(tmp_path: Path, sandbox_ok: None) -> Iterator[tuple[Path, Path]]:
    """(directory with Tidal's wheel, the model package's wheel), built here from source."""
    out = tmp_path / "wheels"
    out.mkdir()
    tidal_wheel(tmp_path, out)
    yield out, model_wheel(tmp_path, tmp_path, MODEL_PACKAGE, "1.0", MODEL_SOURCE)


def instance_user_data(ec2: Any, instance: dict[str, Any]) -> str:
    """The user data EC2 would run: that of the launch template version the instance was launched from."""
    tags = {t["Key"]: t["Value"] for t in instance["Tags"]}
    (version,) = ec2.describe_launch_template_versions(
        LaunchTemplateId=tags["aws:ec2launchtemplate:id"], Versions=[tags["aws:ec2launchtemplate:version"]]
    )["LaunchTemplateVersions"]
    return base64.b64decode(version["LaunchTemplateData"]["UserData"]).decode()


def test_boot_path_user_data_boots_workers_that_run_jobs_and_are_drained_when_idle(
    redis_url: str, r: redis.Redis, aws: str, tmp_path: Path, wheels: tuple[Path, Path]
) -> None:
    wheel_dir, package = wheels
    infra = deploy_stack(WorkerInstanceTypes=INSTANCE_TYPE, TidalPackageSource="tidal==0.1.0",
                         ModelPackageBucket=BUCKET)
    out = infra["outputs"]
    boto3.client("ssm", region_name=REGION).put_parameter(Name="/tidal/redis-url", Value=redis_url,
                                                           Type="SecureString")
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=BUCKET)
    s3.upload_file(str(package), BUCKET, package.name)
    ec2 = boto3.client("ec2", region_name=REGION)

    config = CONFIG.replace("{region}", REGION).replace("{template}", out["WorkerLaunchTemplateName"]).replace(
        "{instance_type}", INSTANCE_TYPE).replace("{subnet}", infra["subnets"][0]).replace(
        "{bucket}", BUCKET).replace("{wheel}", package.name)
    stack = Stack(redis_url, tmp_path, config)
    sandbox: Sandbox | None = None
    try:
        stack.api()  # publishes greet (handler, options, package) to the registry
        stack.dispatcher()
        with httpx.Client(base_url=stack.url, timeout=60) as http:
            job_id = http.post("/v1/models/greet/jobs", json={"input": "world"}).json()["id"]

            launched_at = time.time()
            cron(stack)
            (instance,) = managed(ec2)
            assert instance["InstanceType"] == INSTANCE_TYPE  # 1 worker needed: 1 instance, with 2 GPUs
            iid = instance["InstanceId"]
            tags = {t["Key"]: t["Value"] for t in instance["Tags"]}
            assert tags["tidal:pool"] == "greet"

            vm = imds.Instance(iid, tags)
            with imds.serve(vm) as metadata:
                sandbox = Sandbox(tmp_path / "instance", wheels=wheel_dir, gpus=GPUS, manager_env={
                    "AWS_EC2_METADATA_SERVICE_ENDPOINT": metadata,
                    "AWS_ENDPOINT_URL": aws,  # AWS's APIs, as far as this sandbox is concerned
                })
                booted = sandbox.run_user_data(instance_user_data(ec2, instance))
                user_data_s = time.time() - launched_at
                assert booted.returncode == 0, sandbox.log()

                def both_registered() -> bool:
                    return len(stack.live_workers("greet")) == len(GPUS)

                try:
                    wait_for(both_registered, timeout_s=120, what="a worker per GPU")
                except TimeoutError:
                    raise AssertionError(sandbox.log()) from None
                registered_s = time.time() - launched_at
                workers = {w: stack.redis.hgetall(keys.worker_info(w)) for w in stack.live_workers("greet")}
                assert {info["instance_id"] for info in workers.values()} == {iid}  # the id the provider knows
                assert sorted(info["gpu"] for info in workers.values()) == GPUS
                assert {info["version"] for info in workers.values()} == {"boot-1"}  # from the registry

                job = http.get(f"/v1/jobs/{job_id}", params={"wait": 60}).json()
                assert job["status"] == "succeeded", job
                assert job["result"] == {"text": "Hello, world!", "gpu": workers[job["worker"]]["gpu"]}
                first_job_s = time.time() - launched_at
                print("\nboot_path_timing " + json.dumps({
                    "launch_to_user_data_done_s": round(user_data_s, 2),
                    "launch_to_workers_registered_s": round(registered_s, 2),
                    "launch_to_first_job_result_s": round(first_job_s, 2),
                }))

                # What the instance did, as EC2 would see it: IMDSv2 only, tags, and the role's keys.
                asked = {(method, path) for method, path, _ in vm.seen}
                assert ("PUT", "/latest/api/token") in asked
                assert ("GET", "/latest/meta-data/tags/instance/tidal:pool") in asked
                assert any(path.startswith("/latest/meta-data/iam/security-credentials/") for _, path in asked)

                # Idle: the autoscaler drains the instance's workers, then terminates it.
                def terminated() -> bool:
                    cron(stack)
                    return not managed(ec2, ("pending", "running", "stopping", "stopped"))

                try:
                    wait_for(terminated, timeout_s=120, what="the idle instance terminated")
                except TimeoutError:
                    models = http.get("/v1/models").json()
                    raise AssertionError(f"{models}\n{http.get('/v1/workers').json()}\n{sandbox.log()}") from None
                assert {w["state"] for w in (stack.redis.hgetall(keys.worker_info(w)) for w in workers)} == {
                    "draining"}
                sandbox.shut_down()  # the terminated instance's systemd stops the unit
                assert stack.live_workers("greet") == set()
                assert not set(workers) & stack.redis.smembers(keys.WORKERS)
                assert [e.get("exited") for e in sandbox.events() if "exited" in e] == [0]
    finally:
        if sandbox is not None:
            sandbox.kill()
        stack.stop()
