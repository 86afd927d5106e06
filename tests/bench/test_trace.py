"""The trace reader takes any CSV of the documented shape."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench.trace import GpuModel, TraceColumns, read_trace


def test_timestamps_and_tokens(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text(
        "TIMESTAMP,ContextTokens,GeneratedTokens\n"
        "2023-11-16 18:15:47.1000000,1000,50\n"
        "2023-11-16 18:15:46.6805900,2000,100\n"
    )
    gpu = GpuModel(prefill_tok_per_s=1000.0, decode_tok_per_s=50.0, overhead_s=0.5)
    trace = read_trace(path, TraceColumns(), gpu)
    np.testing.assert_allclose(trace.arrival_s, [0.0, 0.41941])
    np.testing.assert_allclose(trace.service_s, [0.5 + 2.0 + 2.0, 0.5 + 1.0 + 1.0])


def test_seconds_model_and_service_columns(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("t,model,svc\n10.0,a,1.5\n12.5,b,2.0\n11.0,a,3.0\n")
    trace = read_trace(path, TraceColumns(time="t", model="model", service="svc"))
    assert trace.models() == ["a", "b"]
    only_a = trace.only("a")
    np.testing.assert_allclose(only_a.arrival_s, [0.0, 1.0])
    np.testing.assert_allclose(only_a.service_s, [1.5, 3.0])


def test_missing_column_is_named(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("when,x\n1,2\n")
    with pytest.raises(ValueError, match="TIMESTAMP"):
        read_trace(path)
