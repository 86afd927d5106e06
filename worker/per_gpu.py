"""One worker process per GPU, each pinned with ``CUDA_VISIBLE_DEVICES``, under one parent.

The parent is what systemd (or a person) runs: ``tidal worker --model m --gpus auto``. It
starts a ``tidal worker --gpu <id>`` child per GPU, restarts a child that dies, passes SIGTERM
and SIGINT on (each child drains) and waits for them. A child that exits with
:data:`~worker.exit_codes.EXIT_CONFIG` (its model cannot run here) would fail the same way again,
so the parent stops the others and exits with that status too.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

from worker.exit_codes import EXIT_CONFIG

log = logging.getLogger("tidal.worker")

_RESTART_BACKOFF_S = 5.0
_POLL_S = 0.2


@dataclass
class _Child:
    gpu: str
    proc: subprocess.Popen[bytes]
    started: float


def _spawn(argv: list[str], gpu: str) -> _Child:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": gpu}
    # Own session: a terminal's Ctrl-C reaches the parent only, which passes it on once.
    proc = subprocess.Popen(argv, env=env, start_new_session=True)
    log.info("worker for GPU %s started (pid %d)", gpu, proc.pid)
    return _Child(gpu, proc, time.monotonic())


def run_per_gpu(gpus: Sequence[str], child_argv: list[str]) -> int:
    """Run ``child_argv + ["--gpu", id]`` for every GPU until a stop signal; the exit status."""
    # A plain flag: a handler that set a threading.Event could deadlock on the Event's lock if
    # the signal arrived while this thread held it inside Event.wait().
    stopping = False
    status = 0

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    children = [_spawn([*child_argv, "--gpu", g], g) for g in gpus]
    pending: dict[str, float] = {}  # GPU -> when its dead worker may start again
    while not stopping:
        time.sleep(_POLL_S)
        now = time.monotonic()
        for i, child in enumerate(children):
            code = child.proc.poll()
            if code is None:
                continue
            if code == EXIT_CONFIG:
                log.error("worker for GPU %s cannot run this model (exit %d); stopping all", child.gpu, code)
                status = code
                stopping = True
                break
            if child.gpu not in pending:
                wait_s = max(0.0, _RESTART_BACKOFF_S - (now - child.started))
                log.warning("worker for GPU %s exited with %d; restarting in %.0fs", child.gpu, code, wait_s)
                pending[child.gpu] = now + wait_s
            if now >= pending[child.gpu]:
                del pending[child.gpu]
                children[i] = _spawn([*child_argv, "--gpu", child.gpu], child.gpu)
    for child in children:
        if child.proc.poll() is None:
            child.proc.send_signal(signal.SIGTERM)
    for child in children:
        child.proc.wait()
    return status


def child_argv(args_after_cli: list[str]) -> list[str]:
    """The command line of one child: this interpreter running Tidal's CLI with ``args_after_cli``."""
    return [sys.executable, "-m", "launcher.cli", *args_after_cli]
