"""A sandbox that stands in for a fresh EC2 instance, to run the launch template's user data unmodified.

- **Its own filesystem view.** The script runs in a private mount namespace (``unshare``) with
  overlays on ``/etc``, ``/opt``, ``/usr/local`` and ``/var/lib``: everything it writes there
  (``/opt/tidal``, ``/etc/tidal``, the systemd unit, the ``tidal`` user) lands in the sandbox's
  directory, never on this machine. Needs root (or unprivileged user namespaces) and overlayfs.
- **The image.** ``python3.11`` on ``PATH`` is this interpreter's base Python; a venv it creates
  sees Tidal's dependencies (not Tidal) the way an AMI with them preinstalled would, through a
  ``.pth`` file. Tidal itself and the model package are really installed by the script's pip,
  from wheels built by the test (no index, no network).
- **systemd**: ``systemctl`` is :mod:`tests.aws.sandbox_systemctl`, which runs the unit's
  ``ExecStart`` as systemd would; ``nvidia-smi`` (in ``/usr/local/bin``, as a driver install puts it on
  the unit's ``PATH``) lists the GPUs the test says the instance has.
- **AWS**: the metadata service is :mod:`tests.aws.imds` on loopback, reached through
  ``AWS_EC2_METADATA_SERVICE_ENDPOINT`` (which production never sets); the AWS APIs are moto,
  through ``AWS_ENDPOINT_URL``. There are no AWS keys in the environment: boto3 on the
  "instance" gets the instance profile's credentials from the metadata service, as on EC2.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import site
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

from bench.realstack import descendants
from tests.procs import ROOT

OVERLAID = ("etc", "opt", "usr/local", "var/lib")
# Left out of the image: Tidal is what the user data installs, and the venv brings its own pip.
NOT_IN_IMAGE = ("tidal-", "__editable__", "_tidal", "pip", "setuptools", "wheel", "_distutils_hack",
                "distutils-precedence.pth", "__pycache__")


def unavailable() -> str | None:
    """Why the sandbox cannot run here, or None."""
    if sys.platform != "linux" or shutil.which("unshare") is None:
        return "the boot-path sandbox needs Linux with unshare (util-linux)"
    probe = ["unshare", "--mount", "--propagation", "private", "true"]
    if os.geteuid() != 0:
        probe[1:1] = ["--user", "--map-root-user"]
    if subprocess.run(probe, capture_output=True, check=False, timeout=30).returncode != 0:
        return "the boot-path sandbox needs mount namespaces (run as root, or enable user namespaces)"
    if "overlay" not in Path("/proc/filesystems").read_text():
        return "the boot-path sandbox needs overlayfs"
    return None


def build_wheel(source: Path, out: Path) -> Path:
    """A wheel of the project at ``source`` (with this interpreter's setuptools; no network)."""
    before = set(out.glob("*.whl"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                    "--quiet", "--wheel-dir", str(out), str(source)], check=True, timeout=300,
                   env={**os.environ, "PIP_CONFIG_FILE": os.devnull})
    (built,) = set(out.glob("*.whl")) - before
    return built


def tidal_wheel(work: Path, out: Path) -> Path:
    """Tidal's wheel, built from a copy of this checkout (the build writes its scratch there)."""
    src = work / "tidal-src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    # The packages pyproject ships, so a package added or moved there is in the wheel too.
    include = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    for pkg in sorted({p.rstrip("*") for p in include}):
        shutil.copytree(ROOT / pkg, src / pkg, ignore=shutil.ignore_patterns("__pycache__", "out", "results"))
    return build_wheel(src, out)


def model_wheel(work: Path, out: Path, name: str, version: str, module_source: str) -> Path:
    """A one-module package ``name`` (import name: ``name`` with - as _) holding ``module_source``."""
    src = work / f"{name}-src"
    module = name.replace("-", "_")
    (src / module).mkdir(parents=True)
    (src / module / "__init__.py").write_text(module_source)
    (src / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=68"]\nbuild-backend = "setuptools.build_meta"\n'
        f'[project]\nname = "{name}"\nversion = "{version}"\n'
        f'[tool.setuptools]\npackages = ["{module}"]\n'
    )
    return build_wheel(src, out)


class Sandbox:
    def __init__(self, root: Path, *, wheels: Path, gpus: list[str], manager_env: dict[str, str]):
        self.root = root
        self.state = root / "state"  # the supervisor's pid, the unit's log ("journal") and events
        self.bin = root / "bin"
        self.seed = root / "image-site-packages"
        self.home = root / "home"
        for d in (self.state, self.bin, self.seed, self.home):
            d.mkdir(parents=True)
        self.wheels = wheels
        (self.state / "manager-env.json").write_text(json.dumps(manager_env))
        self.manager_env = manager_env
        self._image()
        self._shims(gpus)

    def _image(self) -> None:
        for entry in Path(site.getsitepackages()[0]).iterdir():
            if not entry.name.startswith(NOT_IN_IMAGE):
                (self.seed / entry.name).symlink_to(entry)

    def _shims(self, gpus: list[str]) -> None:
        base = Path(sys._base_executable)  # type: ignore[attr-defined]  # the interpreter under the venv
        version = sysconfig.get_python_version()
        pth = f"import site; site.addsitedir({str(self.seed)!r})"
        (self.bin / f"python{version}").write_text(
            "#!/bin/sh\n"
            "# The image's Python: a venv made with it sees the image's packages (Tidal's dependencies).\n"
            f'if [ "$1" = -m ] && [ "$2" = venv ]; then\n'
            f'  {base} "$@" || exit $?\n'
            f'  for d in "$@"; do :; done\n'
            f'  echo {shell_quote(pth)} > "$d/lib/python{version}/site-packages/_image.pth"\n'
            "  exit 0\n"
            "fi\n"
            f'exec {base} "$@"\n'
        )
        (self.bin / "systemctl").write_text(
            f'#!/bin/sh\nexec {sys.executable} {Path(__file__).parent / "sandbox_systemctl.py"} {self.state} "$@"\n'
        )
        for shim in self.bin.iterdir():
            shim.chmod(0o755)
        # The image's NVIDIA driver: nvidia-smi where the unit's PATH finds it (/usr/local/bin).
        drivers = self.root / "upper" / "usr/local" / "bin"
        drivers.mkdir(parents=True)
        listing = "".join(f"GPU {i}: NVIDIA RTX PRO 6000 (UUID: {u})\\n" for i, u in enumerate(gpus))
        (drivers / "nvidia-smi").write_text(f"#!/bin/sh\nprintf '{listing}'\n")
        (drivers / "nvidia-smi").chmod(0o755)

    def environment(self) -> dict[str, str]:
        """What cloud-init's script sees: a plain root environment, the stand-ins, pip pointed at the wheels."""
        return {
            "PATH": f"{self.bin}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": str(self.home),
            "LANG": "C.UTF-8",
            "PIP_NO_INDEX": "1",
            "PIP_FIND_LINKS": str(self.wheels),
            "PIP_CONFIG_FILE": os.devnull,
            "PIP_NO_CACHE_DIR": "1",
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
            **self.manager_env,
        }

    def run_user_data(self, script: str, timeout_s: float = 300) -> subprocess.CompletedProcess[str]:
        """Run ``script`` as cloud-init would (as root, ``bash``), inside the namespace; it returns when the
        script ends, leaving what it started (the unit) running."""
        (self.root / "user-data").write_text(script)
        mounts = []
        for d in OVERLAID:
            upper, work = self.root / "upper" / d, self.root / "work" / d
            upper.mkdir(parents=True, exist_ok=True)
            work.mkdir(parents=True)
            mounts.append(f"mount -t overlay overlay -o lowerdir=/{d},upperdir={upper},workdir={work} /{d}")
        env_args = " ".join(shell_quote(f"{k}={v}") for k, v in self.environment().items())
        inner = " && ".join([*mounts, f"exec env -i {env_args} /bin/bash {self.root / 'user-data'}"])
        argv = ["unshare", "--mount", "--propagation", "private", "/bin/sh", "-c", inner]
        if os.geteuid() != 0:
            argv[1:1] = ["--user", "--map-root-user"]
        with (self.root / "user-data.log").open("w") as log:
            done = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, text=True, timeout=timeout_s,
                                  check=False, start_new_session=True)
        return done

    def log(self) -> str:
        parts = [f"== {p.name}\n{p.read_text(errors='replace')[-4000:]}"
                 for p in (self.root / "user-data.log", *sorted(self.state.glob("*.log")),
                           *sorted(self.state.glob("*.events"))) if p.exists()]
        return "\n".join(parts)

    def events(self, unit: str = "tidal-worker.service") -> list[dict[str, object]]:
        path = self.state / f"{unit}.events"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def shut_down(self, unit: str = "tidal-worker.service", timeout_s: float = 60) -> None:
        """What an instance does when it is terminated: systemd stops the unit (SIGTERM, then waits)."""
        pid_file = self.state / f"{unit}.pid"
        if not pid_file.exists():
            return
        try:
            subprocess.run([str(self.bin / "systemctl"), "stop", unit], timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{unit} did not stop within {timeout_s:g}s\n{self.log()}") from None

    def kill(self, unit: str = "tidal-worker.service") -> None:
        """Teardown: whatever is left of the unit (the worker parent starts its children in their own
        sessions, so they are found as descendants, not by process group), gone."""
        pid_file = self.state / f"{unit}.pid"
        if not pid_file.exists():
            return
        supervisor = int(pid_file.read_text())
        for pid, _ in {*descendants(supervisor), (supervisor, "")}:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def shell_quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"
