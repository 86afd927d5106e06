"""The GPUs of this machine as ``nvidia-smi -L`` lists them, and the value that pins a process to one.

A worker is pinned with ``CUDA_VISIBLE_DEVICES``. The GPU's UUID is used where ``nvidia-smi``
shows it: ``nvidia-smi`` numbers GPUs in PCI bus order while CUDA, by default, numbers them
fastest first, so an index could name a different GPU for CUDA than the one listed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass

from core.errors import ConfigError

_LINE = re.compile(r"^GPU (?P<index>\d+): (?P<name>.*?)(?: \(UUID: (?P<uuid>[^)]+)\))?$")
_TIMEOUT_S = 15.0


@dataclass(frozen=True, slots=True)
class Gpu:
    index: int
    name: str
    uuid: str | None

    @property
    def visible_id(self) -> str:
        """What ``CUDA_VISIBLE_DEVICES`` should hold to show this GPU and no other."""
        return self.uuid or str(self.index)


def parse_nvidia_smi_list(text: str) -> list[Gpu]:
    """GPUs from ``nvidia-smi -L`` output; MIG lines (indented) and other text are skipped."""
    gpus = []
    for line in text.splitlines():
        m = _LINE.match(line.rstrip())
        if m:
            gpus.append(Gpu(int(m["index"]), m["name"], m["uuid"]))
    return gpus


def detect() -> list[Gpu]:
    """This machine's GPUs; none when ``nvidia-smi`` is missing or fails (no driver, no GPU)."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        out = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return parse_nvidia_smi_list(out.stdout) if out.returncode == 0 else []


def choose(spec: str) -> list[str]:
    """``CUDA_VISIBLE_DEVICES`` values, one per worker, for a ``--gpus`` value.

    ``none``: no pinning (an empty list). ``auto``: every GPU ``nvidia-smi -L`` lists (none
    listed: no pinning). Otherwise a comma-separated list of indices or UUIDs, used as given.
    """
    spec = spec.strip()
    if spec in ("", "none"):
        return []
    if spec == "auto":
        return [g.visible_id for g in detect()]
    ids = [part.strip() for part in spec.split(",")]
    if any(not part or not re.fullmatch(r"[0-9]+|(GPU|MIG)-[A-Za-z0-9-]+", part) for part in ids):
        raise ConfigError(f"--gpus: {spec!r} is not 'auto', 'none' or a list like '0,1'")
    if len(set(ids)) != len(ids):
        raise ConfigError(f"--gpus: {spec!r} names a GPU twice")
    return ids
