"""``systemctl`` for the boot-path sandbox: runs a unit's ``ExecStart`` the way systemd would.

Usage (through the sandbox's ``systemctl`` shim): ``sandbox_systemctl.py STATE_DIR ARGS...`` with
``daemon-reload``, ``enable [--now] UNIT``, ``start UNIT`` or ``stop UNIT``. Starting forks a
supervisor (its pid in ``STATE_DIR/UNIT.pid``) that runs the unit's ``ExecStart`` with the
environment systemd would give it: a clean one, ``EnvironmentFile=`` loaded, ``$VAR`` split
into words and ``${VAR}`` kept whole, in ``WorkingDirectory=``, plus the manager's environment
(``STATE_DIR/manager-env.json``: how the sandbox reaches its stand-ins for AWS). It restarts the
process per ``Restart=always``/``RestartSec=``, except after an exit status listed in
``RestartPreventExitStatus=``; SIGTERM to the supervisor stops the unit (SIGTERM, then SIGKILL
after ``TimeoutStopSec=``), as a shutdown does. Output goes to ``STATE_DIR/UNIT.log`` (the
journal) and every start and exit to ``STATE_DIR/UNIT.events`` as JSON lines.

``User=`` is recorded, not applied: the sandbox runs the unit as its own user.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

UNIT_DIR = Path("/etc/systemd/system")
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def parse_unit(text: str) -> dict[str, str]:
    """``Section.Key`` -> value (the last one wins, as for the keys Tidal's unit uses)."""
    out: dict[str, str] = {}
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, _, value = line.partition("=")
        out[f"{section}.{key.strip()}"] = value.strip()
    return out


def parse_env_file(text: str) -> dict[str, str]:
    env = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")) or "=" not in line:
            continue
        key, _, value = line.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        env[key.strip()] = value
    return env


def expand(command: str, env: dict[str, str]) -> list[str]:
    """systemd's ExecStart expansion: a word that is only ``$VAR`` becomes its value's words."""
    argv: list[str] = []
    for word in shlex.split(command):
        whole = re.fullmatch(r"\$([A-Za-z_][A-Za-z0-9_]*)", word)
        if whole:
            argv.extend(env.get(whole[1], "").split())
            continue
        argv.append(re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", lambda m: env.get(m[1], ""), word))
    return argv


class Supervisor:
    def __init__(self, state: Path, name: str, unit: dict[str, str]):
        self.state = state
        self.name = name
        self.unit = unit
        self.stopping = False
        self.proc: subprocess.Popen[bytes] | None = None

    def event(self, **fields: object) -> None:
        with (self.state / f"{self.name}.events").open("a") as f:
            f.write(json.dumps({"at": time.time(), **fields}) + "\n")

    def environment(self) -> dict[str, str]:
        env = {"PATH": DEFAULT_PATH, "LANG": "C.UTF-8"}
        env |= json.loads((self.state / "manager-env.json").read_text())
        env_file = self.unit.get("Service.EnvironmentFile")
        if env_file:
            env |= parse_env_file(Path(env_file.lstrip("-")).read_text())
        return env

    def on_term(self, signum: int, frame: object) -> None:
        self.stopping = True
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self.on_term)
        prevent = {int(c) for c in self.unit.get("Service.RestartPreventExitStatus", "").split()}
        restart_s = float(self.unit.get("Service.RestartSec", "0.1"))
        stop_timeout_s = float(self.unit.get("Service.TimeoutStopSec", "90"))
        if "Service.User" in self.unit:
            self.event(note=f"User={self.unit['Service.User']} not applied in the sandbox")
        while not self.stopping:
            env = self.environment()
            argv = expand(self.unit["Service.ExecStart"], env)
            self.event(started=argv)
            with (self.state / f"{self.name}.log").open("ab") as log:
                self.proc = subprocess.Popen(argv, env=env, cwd=self.unit.get("Service.WorkingDirectory", "/"),
                                             stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
            while True:
                try:
                    code = self.proc.wait(timeout=stop_timeout_s if self.stopping else None)
                    break
                except subprocess.TimeoutExpired:
                    self.proc.kill()
            self.event(exited=code)
            if self.stopping or code in prevent or self.unit.get("Service.Restart") != "always":
                break
            time.sleep(restart_s)
        self.event(stopped=True)
        return 0


def start(state: Path, name: str) -> None:
    unit = parse_unit((UNIT_DIR / name).read_text())
    if os.fork() != 0:
        return  # systemctl returns once the service is started (Type=simple)
    os.setsid()
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    (state / f"{name}.pid").write_text(str(os.getpid()))
    os._exit(Supervisor(state, name, unit).run())


def _gone(pid: int) -> bool:
    """Exited. The supervisor is an orphan (the ``systemctl`` that forked it has exited), so once it
    exits it may stay a zombie until the machine's init gets round to reaping it: that is gone too."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat[stat.rindex(")") + 2] in "ZX"


def stop(state: Path, name: str) -> None:
    pid_file = state / f"{name}.pid"
    if not pid_file.exists():
        return
    pid = int(pid_file.read_text())
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    while not _gone(pid):
        time.sleep(0.05)


def main(argv: list[str]) -> int:
    state, args = Path(argv[0]), argv[1:]
    verbs = [a for a in args if not a.startswith("-")]
    if not verbs:
        return 1
    verb, units = verbs[0], [u if "." in u else f"{u}.service" for u in verbs[1:]]
    if verb == "daemon-reload":
        return 0
    if verb in ("enable", "start"):
        for name in units:
            if not (UNIT_DIR / name).exists():
                print(f"Failed to {verb} unit: Unit file {name} does not exist.", file=sys.stderr)
                return 1
            if verb == "start" or "--now" in args:
                start(state, name)
        return 0
    if verb == "stop":
        for name in units:
            stop(state, name)
        return 0
    print(f"sandbox systemctl: {verb} is not supported", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
