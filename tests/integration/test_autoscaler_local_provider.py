"""The local provider with real processes: harmless Python sleepers, and once a real worker.

Every test stops what it started (``stop_all`` in the fixture's teardown) and checks by pid
that nothing is left behind.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from autoscaler.local_provider import LocalProvider, worker_command
from core import keys

# Writes its instance id and its child's pid, then sleeps; the child sleeps too, so a test can
# see that stopping the instance stops its whole process group.
SLEEPER = """
import os, subprocess, sys, time, signal
if sys.argv[2] == "stubborn":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
out = os.path.join(sys.argv[1], os.environ["TIDAL_INSTANCE_ID"] + ".out")
with open(out + ".tmp", "w") as f:
    f.write(f"{os.environ['TIDAL_INSTANCE_ID']} {child.pid} {os.environ.get('EXTRA', '')}")
os.replace(out + ".tmp", out)
time.sleep(120)
"""


def sleeper(out_dir: Path) -> Callable[[str], list[str]]:
    return lambda pool: [sys.executable, "-c", SLEEPER, str(out_dir), pool]


def gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat[stat.rindex(")") + 2] == "Z"


def wait_for(cond: Callable[[], bool], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.05)


def started(out_dir: Path, instance_id: str) -> tuple[str, int, str]:
    path = out_dir / f"{instance_id}.out"
    wait_for(path.exists)
    iid, child, extra = path.read_text().split(" ", 2)
    return iid, int(child), extra


@pytest.fixture
def records(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "instances"
    yield path
    LocalProvider(path).stop_all(timeout_s=5.0)
    assert not path.exists() or list(path.glob("*.json")) == []  # every recorded process is gone


def test_launch_list_and_stop_across_provider_objects(records: Path, tmp_path: Path) -> None:
    first = LocalProvider(records, command=sleeper(tmp_path), env={"EXTRA": "hello"})
    launched = first.launch("echo", 2, token="t1")
    assert [i.pool for i in launched] == ["echo", "echo"]
    assert {i.state for i in launched} == {"running"}
    for inst in launched:
        iid, _, extra = started(tmp_path, inst.id)
        assert (iid, extra) == (inst.id, "hello")

    # A later cron run is a new provider object reading the same records.
    second = LocalProvider(records, command=sleeper(tmp_path))
    assert sorted(i.id for i in second.list_instances("echo")) == sorted(i.id for i in launched)
    assert second.list_instances("other") == []

    pids = {i.id: int(json_pid(records, i.id)) for i in launched}
    children = {i.id: started(tmp_path, i.id)[1] for i in launched}
    second.terminate([launched[0].id, "local-unknown"])
    wait_for(lambda: gone(pids[launched[0].id]) and gone(children[launched[0].id]))
    assert [i.id for i in second.list_instances()] == [launched[1].id]
    assert not (records / f"{launched[0].id}.json").exists()
    assert not gone(pids[launched[1].id])


def json_pid(records: Path, instance_id: str) -> str:
    return str(json.loads((records / f"{instance_id}.json").read_text())["pid"])


def test_launch_is_idempotent_per_token(records: Path, tmp_path: Path) -> None:
    provider = LocalProvider(records, command=sleeper(tmp_path))
    a = provider.launch("echo", 1, token="same")
    b = LocalProvider(records, command=sleeper(tmp_path)).launch("echo", 1, token="same")
    assert [i.id for i in a] == [i.id for i in b]
    assert len(provider.list_instances()) == 1


def test_sigkill_after_grace_for_a_process_that_ignores_sigterm(records: Path, tmp_path: Path) -> None:
    now = [1000.0]
    provider = LocalProvider(records, command=sleeper(tmp_path), stop_grace_s=30.0, clock=lambda: now[0])
    (inst,) = provider.launch("stubborn", 1, token="t")
    _, child, _ = started(tmp_path, inst.id)
    pid = int(json_pid(records, inst.id))

    provider.terminate([inst.id])
    time.sleep(0.5)
    assert [i.state for i in provider.list_instances()] == ["stopping"]
    assert not gone(pid)

    now[0] += 30.0
    provider.list_instances()  # enforces the grace
    wait_for(lambda: gone(pid) and gone(child))
    assert provider.list_instances() == []


def test_a_dead_process_is_no_longer_listed(records: Path, tmp_path: Path) -> None:
    provider = LocalProvider(records, command=lambda pool: [sys.executable, "-c", "pass"])
    (inst,) = provider.launch("echo", 1, token="t")
    wait_for(lambda: provider.list_instances() == [])
    assert not (records / f"{inst.id}.json").exists()


def test_worker_command_runs_the_tidal_worker() -> None:
    assert worker_command("echo") == [sys.executable, "-m", "launcher.cli", "worker", "--model", "echo"]


def test_real_worker_registers_with_its_instance_id_and_drains_on_stop(
    records: Path, tmp_path: Path, redis_url: str, r: redis.Redis
) -> None:
    config = tmp_path / "tidal.toml"
    config.write_text('[models.echo]\nhandler = "worker.handlers.echo:Echo"\n')
    repo = Path(__file__).resolve().parents[2]
    provider = LocalProvider(
        records,
        env={"REDIS_URL": redis_url, "TIDAL_CONFIG": str(config), "PYTHONPATH": str(repo)},
        stop_grace_s=10.0,
    )
    (inst,) = provider.launch("echo", 1, token="real")

    def registered() -> str | None:
        for wid in map(str, r.smembers(keys.WORKERS)):
            if r.hget(keys.worker_info(wid), "instance_id") == inst.id:
                return wid
        return None

    try:
        wait_for(lambda: registered() is not None, timeout_s=30.0)
    except AssertionError:
        log = records / f"{inst.id}.log"
        raise AssertionError(log.read_text() if log.exists() else "no worker log") from None
    wid = registered()
    assert wid is not None
    assert r.hget(keys.worker_info(wid), "model") == "echo"
    assert r.exists(keys.worker_alive(wid)) == 1
    pid = int(json_pid(records, inst.id))

    provider.terminate([inst.id])
    wait_for(lambda: gone(pid), timeout_s=15.0)
    assert r.sismember(keys.WORKERS, wid) == 0  # it deregistered itself
    assert provider.list_instances() == []


# Writes the GPU it was pinned to, then sleeps.
GPU_SLEEPER = """
import os, sys, time
out = os.path.join(sys.argv[1], os.environ["TIDAL_INSTANCE_ID"] + ".gpu")
with open(out + ".tmp", "w") as f:
    f.write(os.environ.get("CUDA_VISIBLE_DEVICES", "-") + " " + os.environ.get("TIDAL_GPUS", "-"))
os.replace(out + ".tmp", out)
time.sleep(120)
"""


def test_each_worker_is_pinned_to_a_gpu_no_other_live_worker_holds(records: Path, tmp_path: Path) -> None:
    from core.errors import CapacityError

    provider = LocalProvider(records, command=lambda pool: [sys.executable, "-c", GPU_SLEEPER, str(tmp_path)],
                             gpus=["GPU-aaaa", "GPU-bbbb"])

    def pinned(instance_id: str) -> str:
        path = tmp_path / f"{instance_id}.gpu"
        wait_for(path.exists)
        return path.read_text()

    first = provider.launch("echo", 2, token="t1")
    assert sorted(pinned(i.id) for i in first) == ["GPU-aaaa none", "GPU-bbbb none"]
    with pytest.raises(CapacityError, match="0 of this machine's 2 GPU"):
        provider.launch("echo", 1, token="t2")

    freed = pinned(first[0].id).split()[0]
    pid = int(json_pid(records, first[0].id))
    provider.terminate([first[0].id])
    wait_for(lambda: gone(pid))
    (again,) = provider.launch("echo", 1, token="t3")
    assert pinned(again.id).split()[0] == freed


def test_without_gpus_workers_are_not_pinned(records: Path, tmp_path: Path) -> None:
    provider = LocalProvider(records, command=lambda pool: [sys.executable, "-c", GPU_SLEEPER, str(tmp_path)],
                             env={"CUDA_VISIBLE_DEVICES": "untouched"})
    (inst,) = provider.launch("echo", 1, token="t")
    path = tmp_path / f"{inst.id}.gpu"
    wait_for(path.exists)
    assert path.read_text() == "untouched -"
