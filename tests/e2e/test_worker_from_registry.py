"""A worker needs only REDIS_URL and --model: its settings come from the registry the API published."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from core import keys
from tests.procs import FAST, ROOT, Stack, api_and_dispatcher, wait_for
from worker.exit_codes import EXIT_CONFIG

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

CONFIG = FAST + """
[models.shout]
handler = "tests.handlers:Shout"
version = "from-registry"
options = {{ suffix = "!" }}
"""


@pytest.fixture
def stack(redis_url: str, tmp_path: Path) -> Iterator[Stack]:
    with api_and_dispatcher(redis_url, tmp_path, CONFIG) as s:  # the API publishes shout as it starts
        yield s


def bare_worker(stack: Stack, cwd: Path, *args: str) -> subprocess.Popen[bytes]:
    """`tidal worker` in ``cwd`` with nothing but REDIS_URL (and PATH, PYTHONPATH to find the code)."""
    env = {"PATH": "/usr/bin:/bin", "REDIS_URL": stack.redis_url, "PYTHONPATH": str(ROOT)}
    with (stack.tmp / f"bare-{len(stack.procs)}.log").open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "launcher.cli", "worker", *args], cwd=cwd, env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    stack.procs.append(proc)
    return proc


def test_a_worker_in_an_empty_directory_runs_jobs_with_the_published_settings(stack: Stack) -> None:
    empty = stack.tmp / "empty"
    empty.mkdir()
    bare_worker(stack, empty, "--model", "shout")
    wait_for(lambda: len(stack.live_workers("shout")) == 1, what="the worker")
    (wid,) = stack.live_workers("shout")
    assert stack.redis.hget(keys.worker_info(wid), "version") == "from-registry"
    with httpx.Client(base_url=stack.url, timeout=40) as http:
        job_id = http.post("/v1/models/shout/jobs", json={"input": "hello"}).json()["id"]
        job = http.get(f"/v1/jobs/{job_id}", params={"wait": 30}).json()
    assert (job["status"], job["result"]) == ("succeeded", "HELLO!")  # the published options reached it
    assert list(empty.iterdir()) == []
    assert "settings from the registry revision 1" in stack.logs()


def test_a_config_file_on_the_host_wins_over_the_registry(stack: Stack) -> None:
    here = stack.tmp / "host"
    here.mkdir()
    (here / "tidal.toml").write_text('[models.shout]\nhandler = "tests.handlers:Shout"\nversion = "host-file"\n')
    bare_worker(stack, here, "--model", "shout")
    wait_for(lambda: len(stack.live_workers("shout")) == 1, what="the worker")
    (wid,) = stack.live_workers("shout")
    assert stack.redis.hget(keys.worker_info(wid), "version") == "host-file"


def test_an_unknown_model_names_what_is_registered_exits_78_and_tells_the_autoscaler(stack: Stack) -> None:
    empty = stack.tmp / "empty"
    empty.mkdir()
    proc = bare_worker(stack, empty, "--model", "nope", "--instance-id", "i-0feed")
    assert proc.wait(timeout=30) == EXIT_CONFIG
    assert "unknown model 'nope': the registry has shout; publish it with `tidal models push`" in stack.logs()
    report = json.loads(stack.redis.hget(keys.boot_errors("nope"), "i-0feed") or "{}")
    assert report["final"] is True and "unknown model 'nope'" in report["error"]


def test_a_handler_that_cannot_be_imported_exits_78(stack: Stack) -> None:
    here = stack.tmp / "host"
    here.mkdir()
    (here / "tidal.toml").write_text('[models.shout]\nhandler = "not_installed_pkg.models:Big"\n')
    proc = bare_worker(stack, here, "--model", "shout", "--instance-id", "i-0bad")
    assert proc.wait(timeout=30) == EXIT_CONFIG
    report = json.loads(stack.redis.hget(keys.boot_errors("shout"), "i-0bad") or "{}")
    assert "cannot be imported" in report["error"] and report["final"] is True
