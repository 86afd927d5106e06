from __future__ import annotations

from worker.tracebacks import format_error, scrub


def test_error_keeps_traceback_but_no_environment_value() -> None:
    env = {"API_TOKEN": "tok-123456789", "REDIS_URL": "redis://:hunter22@db:6379", "HOME": "/root", "X": "ab"}
    try:
        raise RuntimeError("cannot reach redis://:hunter22@db:6379 with tok-123456789")
    except RuntimeError as exc:
        text = format_error(exc, env)
    assert "Traceback (most recent call last)" in text
    assert "RuntimeError: cannot reach [redacted] with [redacted]" in text
    assert "hunter22" not in text and "tok-123456789" not in text
    assert "test_tracebacks.py" in text  # file paths survive


def test_paths_and_short_values_are_left_alone() -> None:
    env = {"PATH": "/usr/bin:/bin", "LANG": "C", "PWD": "/work"}
    assert scrub('File "/usr/bin/x", line 1 in C', env) == 'File "/usr/bin/x", line 1 in C'
