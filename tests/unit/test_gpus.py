"""Reading `nvidia-smi -L` and choosing what each worker is pinned to."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from core.errors import ConfigError
from core.gpus import Gpu, choose, detect, parse_nvidia_smi_list

LISTING = """GPU 0: NVIDIA A10G (UUID: GPU-2f0c3c7e-1111-2222-3333-444455556666)
GPU 1: Tesla T4 (UUID: GPU-9a9a9a9a-1111-2222-3333-444455556666)
  MIG 1g.5gb      Device  0: (UUID: MIG-aaaa)
GPU 2: NVIDIA H100 80GB HBM3
"""


def test_parse_lists_gpus_with_uuids_and_skips_mig_lines() -> None:
    assert parse_nvidia_smi_list(LISTING) == [
        Gpu(0, "NVIDIA A10G", "GPU-2f0c3c7e-1111-2222-3333-444455556666"),
        Gpu(1, "Tesla T4", "GPU-9a9a9a9a-1111-2222-3333-444455556666"),
        Gpu(2, "NVIDIA H100 80GB HBM3", None),
    ]
    # A UUID pins unambiguously; without one the index is all there is.
    assert [g.visible_id for g in parse_nvidia_smi_list(LISTING)][1:] == [
        "GPU-9a9a9a9a-1111-2222-3333-444455556666", "2",
    ]


def fake_nvidia_smi(bin_dir: Path, output: str, status: int = 0) -> None:
    bin_dir.mkdir(exist_ok=True)
    script = bin_dir / "nvidia-smi"
    script.write_text(f"#!/bin/sh\n[ \"$1\" = -L ] || exit 9\ncat <<'EOF'\n{output}EOF\nexit {status}\n")
    script.chmod(0o755)


@pytest.mark.parametrize(
    ("spec", "want"),
    [
        ("auto", ["GPU-2f0c3c7e-1111-2222-3333-444455556666", "GPU-9a9a9a9a-1111-2222-3333-444455556666", "2"]),
        ("none", []),
        ("0,3", ["0", "3"]),
        ("GPU-x", ["GPU-x"]),
    ],
)
def test_choose(spec: str, want: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_nvidia_smi(tmp_path, LISTING)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    assert choose(spec) == want


def test_no_nvidia_smi_or_a_failing_one_means_no_gpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert detect() == [] and choose("auto") == []
    fake_nvidia_smi(tmp_path, "NVIDIA-SMI has failed because it couldn't communicate with the driver\n", 9)
    assert detect() == []


@pytest.mark.parametrize("spec", ["0,0", "0,,1", "0;1", "all"])
def test_bad_gpu_lists_are_config_errors(spec: str) -> None:
    with pytest.raises(ConfigError, match="--gpus"):
        choose(spec)
