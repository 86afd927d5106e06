"""The HTTP API against a real server, with the API under uvicorn and real dispatcher and workers."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import redis
from rq import Queue

from core import keys
from tests.procs import Stack, wait_for

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    redis.Redis.from_url(redis_url).flushdb()
    s = Stack(redis_url, tmp_path_factory.mktemp("stack"))
    try:
        s.api()
        s.dispatcher()
        for _ in range(2):
            s.worker("echo")
            s.worker("sleep")
        s.worker("boom", env={"TIDAL_TEST_SECRET": "s3cret-value-42"})
        yield s
    except BaseException:
        print(s.logs())
        raise
    finally:
        s.stop()


@pytest.fixture(scope="module")
def http(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.url, timeout=70) as c:
        yield c


def submit(http: httpx.Client, model: str, body: object, **kw: object) -> httpx.Response:
    return http.post(f"/v1/models/{model}/jobs", json=body, **kw)  # type: ignore[arg-type]


def wait(http: httpx.Client, job_id: str, seconds: float = 30) -> dict[str, object]:
    r = http.get(f"/v1/jobs/{job_id}", params={"wait": seconds})
    assert r.status_code == 200
    return r.json()  # type: ignore[no-any-return]


def test_submit_then_result(http: httpx.Client) -> None:
    r = submit(http, "echo", {"input": {"x": 1}})
    assert r.status_code == 202
    body = r.json()
    assert body["status"] == "queued" and body["model"] == "echo" and body["links"]["self"] == f"/v1/jobs/{body['id']}"
    job = wait(http, body["id"])
    assert job["status"] == "succeeded"
    assert job["result"] == {"x": 1}
    assert job["worker"].startswith("echo-")
    for k in ("queued_at", "dispatched_at", "started_at", "finished_at"):
        assert job[k]
    assert job["queue_s"] >= 0 and job["run_s"] >= 0


def test_curl_style_form_content_type_is_read_as_json(http: httpx.Client) -> None:
    r = http.post("/v1/models/echo/jobs", content=b'{"input": {"x": 1}}',
                  headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 202
    assert wait(http, r.json()["id"])["result"] == {"x": 1}


def test_long_poll_returns_when_the_job_ends(http: httpx.Client) -> None:
    job_id = submit(http, "sleep", {"input": {"ms": 400}}).json()["id"]
    assert http.get(f"/v1/jobs/{job_id}").json()["status"] in ("queued", "dispatched", "running")
    job = wait(http, job_id, 30)
    assert job["status"] == "succeeded" and job["result"] == {"slept_ms": 400.0}


def test_long_poll_gives_up_at_its_deadline_with_the_current_state(http: httpx.Client) -> None:
    job_id = submit(http, "idle", {"input": 1}).json()["id"]
    assert wait(http, job_id, 0.3)["status"] == "queued"
    http.post(f"/v1/jobs/{job_id}/cancel")


def test_cancel_while_queued(http: httpx.Client, stack: Stack) -> None:
    job_id = submit(http, "idle", {"input": 1}).json()["id"]
    r = http.post(f"/v1/jobs/{job_id}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "canceled"
    assert stack.redis.llen(keys.model_queue("idle")) == 0
    assert http.post(f"/v1/jobs/{job_id}/cancel").status_code == 409


def test_cancel_while_running_stops_the_handler_and_frees_the_slot(http: httpx.Client, stack: Stack) -> None:
    job_id = submit(http, "sleep", {"input": {"ms": 60_000}}).json()["id"]
    wait_for(lambda: http.get(f"/v1/jobs/{job_id}").json()["status"] == "running", what="running")
    worker = http.get(f"/v1/jobs/{job_id}").json()["worker"]
    r = http.post(f"/v1/jobs/{job_id}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "canceled"
    # The worker got the stop signal: its active list empties long before 60 s.
    wait_for(lambda: stack.redis.llen(keys.worker_active(worker)) == 0, timeout_s=10, what="slot freed")
    assert wait(http, job_id, 1)["status"] == "canceled"


def test_finished_job_cannot_be_canceled(http: httpx.Client) -> None:
    job_id = submit(http, "echo", {"input": 1}).json()["id"]
    wait(http, job_id)
    r = http.post(f"/v1/jobs/{job_id}/cancel")
    assert r.status_code == 409 and "already ended" in r.json()["detail"]


def test_idempotency_key_returns_the_same_job(http: httpx.Client) -> None:
    a = submit(http, "echo", {"input": 1}, headers={"Idempotency-Key": "order-77"})
    b = submit(http, "echo", {"input": 1}, headers={"Idempotency-Key": "order-77"})
    c = submit(http, "echo", {"input": 1}, headers={"Idempotency-Key": "order-78"})
    assert a.status_code == 202 and b.status_code == 200
    assert b.headers["Idempotent-Replayed"] == "true"
    assert a.json()["id"] == b.json()["id"] != c.json()["id"]


@pytest.mark.parametrize(
    ("path", "body", "status", "needle"),
    [
        ("/v1/models/nope/jobs", {"input": 1}, 404, "unknown model 'nope'"),
        ("/v1/models/echo/jobs", {"inputs": 1}, 422, "input"),
        ("/v1/models/echo/jobs", {"input": 1, "priority": "urgent"}, 422, "priority"),
        ("/v1/models/echo/jobs", {"input": 1, "timeout_s": 0}, 422, "timeout_s"),
        ("/v1/models/echo/jobs", {"input": 1, "session": ""}, 422, "session"),
        ("/v1/models/echo/jobs", {"input": "x" * 5000}, 413, "4096-byte limit"),
    ],
)
def test_bad_input_gets_a_clear_error(http: httpx.Client, path: str, body: object, status: int, needle: str) -> None:
    r = http.post(path, json=body)
    assert r.status_code == status
    assert needle in r.text


def test_invalid_json_is_422(http: httpx.Client) -> None:
    r = http.post("/v1/models/echo/jobs", content=b"{not json")
    assert r.status_code == 422 and "json" in r.text.lower()


def test_unknown_job_is_404_and_bad_wait_is_422(http: httpx.Client) -> None:
    assert http.get("/v1/jobs/does-not-exist").status_code == 404
    r = http.get("/v1/jobs/x", params={"wait": 61})
    assert r.status_code == 422 and "wait" in r.text


def test_backlog_over_max_queue_len_is_429_and_nothing_is_lost(http: httpx.Client, stack: Stack) -> None:
    ids = [submit(http, "idle", {"input": i}).json()["id"] for i in range(3)]
    r = submit(http, "idle", {"input": 99})
    assert r.status_code == 429
    assert int(r.headers["Retry-After"]) >= 1
    assert "max_queue_len 3" in r.json()["detail"]
    assert stack.redis.lrange(keys.model_queue("idle"), 0, -1) == ids
    for job_id in ids:
        http.post(f"/v1/jobs/{job_id}/cancel")


def test_failed_job_keeps_traceback_but_no_environment_value(http: httpx.Client) -> None:
    job = wait(http, submit(http, "boom", {"input": 1}).json()["id"])
    assert job["status"] == "failed"
    assert "Traceback" in job["error"] and "RuntimeError" in job["error"]  # type: ignore[operator]
    assert "s3cret-value-42" not in job["error"]  # type: ignore[operator]


def test_timeout_fails_the_job(http: httpx.Client) -> None:
    job = wait(http, submit(http, "sleep", {"input": {"ms": 30_000}, "timeout_s": 1}).json()["id"])
    assert job["status"] == "failed" and "timeout" in job["error"]  # type: ignore[operator]


def test_models_workers_health_and_docs(http: httpx.Client) -> None:
    models = {m["name"]: m for m in http.get("/v1/models").json()["models"]}
    assert models["echo"]["workers"] == 2 and models["echo"]["policy"] == "least-backlog"
    assert models["echo"]["version"] == "1" and models["idle"]["workers"] == 0
    assert {"backlog", "in_flight"} <= set(models["sleep"])
    workers = http.get("/v1/workers").json()["workers"]
    assert {w["model"] for w in workers} == {"echo", "sleep", "boom"}
    assert all(w["state"] == "ready" and w["slots"] == 1 and w["host"] for w in workers)
    assert http.get("/healthz").json() == {"ok": True}
    assert http.get("/docs").status_code == 200
    assert "/v1/models/{model}/jobs" in http.get("/openapi.json").json()["paths"]


def test_policy_switch_under_load_loses_no_job(http: httpx.Client, stack: Stack) -> None:
    policies = ["weighted", "round-robin", "least-connections", "least-latency", "hash", "random", "least-backlog"]
    stop = threading.Event()

    def switcher() -> None:
        i = 0
        while not stop.is_set():
            assert http.put("/v1/models/sleep/policy", json={"policy": policies[i % len(policies)]}).status_code == 200
            i += 1
            time.sleep(0.02)

    t = threading.Thread(target=switcher)
    t.start()
    try:
        ids = [submit(http, "sleep", {"input": {"ms": 5}, "session": f"s{i % 7}"}).json()["id"] for i in range(150)]
        jobs = [wait(http, j, 60) for j in ids]
    finally:
        stop.set()
        t.join()
    assert [j["status"] for j in jobs] == ["succeeded"] * 150
    bad = http.put("/v1/models/sleep/policy", json={"policy": "fastest"})
    assert bad.status_code == 422 and "policy" in bad.text
    assert http.put("/v1/models/nope/policy", json={"policy": "random"}).status_code == 404
    assert http.put("/v1/models/sleep/policy", json={"policy": "hash"}).json()["policy"] == "hash"
    models = {m["name"]: m for m in http.get("/v1/models").json()["models"]}
    assert models["sleep"]["policy"] == "hash"
    http.put("/v1/models/sleep/policy", json={"policy": "least-backlog"})


def test_rq_sees_our_queues(stack: Stack) -> None:
    names = {q.name for q in Queue.all(connection=redis.Redis.from_url(stack.redis_url))}
    assert {"echo", "sleep", "idle"} <= names
    assert any(n.startswith("w.echo-") for n in names)
