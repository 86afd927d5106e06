"""A pool whose instances never register stops launching after 3 tries, says why, and resumes on a fix.

Each "instance" moto launches boots as a real `tidal worker --instance-id <id>` with nothing but
REDIS_URL, the way the user data starts it; its model's handler is in a package that was never
installed, so every worker exits with EXIT_CONFIG and reports why through the registry.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from tests.aws.conftest import REGION, TEMPLATE_NAME, Network
from tests.aws.test_aws_cron_cli import cron, managed
from tests.procs import FAST, ROOT, Stack, wait_for
from worker.exit_codes import EXIT_CONFIG

pytestmark = pytest.mark.timeout(180)

CONFIG = FAST + """
[autoscaler]
enabled = true
provider = "aws-ec2"
[autoscaler.aws]
region = "{region}"
launch_template_name = "{template}"
[models.llm]
handler = "{handler}"
min_workers = 1
max_workers = 1
""".replace("{region}", REGION).replace("{template}", TEMPLATE_NAME)

BROKEN = CONFIG.replace("{handler}", "acme_llm_not_installed.serve:Model")
FIXED = CONFIG.replace("{handler}", "worker.handlers.echo:Echo")


def boot(stack: Stack, instance_id: str) -> subprocess.Popen[bytes]:
    """What the instance's unit runs: a worker with only REDIS_URL, in an empty home."""
    home = stack.tmp / instance_id
    home.mkdir()
    env = {"PATH": "/usr/bin:/bin", "REDIS_URL": stack.redis_url, "PYTHONPATH": str(ROOT)}
    with (stack.tmp / f"{instance_id}.log").open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "launcher.cli", "worker", "--model", "llm", "--instance-id",
                                 instance_id], cwd=home, env=env, stdout=log, stderr=subprocess.STDOUT)
    stack.procs.append(proc)
    return proc


def test_three_launches_that_never_register_break_the_pool_until_its_model_changes(
    redis_url: str, r: redis.Redis, ec2: Any, network: Network, tmp_path: Path
) -> None:
    stack = Stack(redis_url, tmp_path, BROKEN)
    try:
        stack.api()  # publishes llm, with its (broken) handler, to the registry
        tried: list[str] = []
        for _ in range(3):
            cron(stack)
            (inst,) = [i["InstanceId"] for i in managed(ec2) if i["InstanceId"] not in tried]
            tried.append(inst)
            assert boot(stack, inst).wait(timeout=60) == EXIT_CONFIG
        cron(stack)  # sees the third failure: terminates it and launches no fourth
        assert managed(ec2) == []
        cron(stack)
        assert managed(ec2) == []

        with httpx.Client(base_url=stack.url, timeout=10) as http:
            (llm,) = http.get("/v1/models").json()["models"]
        assert llm["broken"].startswith("3 launches in a row never registered a worker; last boot error: ")
        assert "acme_llm_not_installed.serve:Model' cannot be imported" in llm["broken"]
        assert "not launching until the model's settings or package change" in llm["broken"]
        assert llm["scale_reason"].startswith("pool broken: 3 launches in a row")

        # The fix: a handler that exists, published with `tidal models push`.
        stack.config.write_text(FIXED.format(port=stack.port))
        pushed = subprocess.run([sys.executable, "-m", "launcher.cli", "models", "push"], cwd=ROOT, env=stack.env,
                                capture_output=True, text=True, timeout=60, check=False)
        assert pushed.stdout == "llm: revision 2 (published)\n", pushed.stderr
        cron(stack)
        (fresh,) = managed(ec2)
        boot(stack, fresh["InstanceId"])
        wait_for(lambda: len(stack.live_workers("llm")) == 1, what="the fixed pool's worker")
        cron(stack)
        with httpx.Client(base_url=stack.url, timeout=10) as http:
            (llm,) = http.get("/v1/models").json()["models"]
        assert llm["broken"] is None and llm["workers"] == 1
    finally:
        stack.stop()
