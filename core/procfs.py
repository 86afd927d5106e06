"""Reading processes from /proc: liveness that sees through zombies, and start times that tell a
reused pid apart from the process that first had it."""

from __future__ import annotations

from pathlib import Path


def stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name; ``None`` without procfs or process."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may itself contain ") ", so split at the last one.
    return raw[raw.rindex(")") + 2 :].split()


def start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (stat field 22)."""
    fields = stat_fields(pid)
    return fields[19] if fields else None


def running(pid: int) -> bool:
    """Alive and not a zombie waiting to be reaped."""
    fields = stat_fields(pid)
    return fields is not None and fields[0] != "Z"
