"""Installing a model's handler code (its ``package``) into this interpreter's environment.

The package is one pip requirement: ``mymodels==1.2``, a wheel URL, ``git+https://…``, or an
``s3://bucket/key`` URI, which is downloaded with the instance's role first (pip cannot read
S3) and installed from the file, under its own name so pip sees a wheel or an sdist.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path, PurePosixPath

from core.errors import TidalError


class InstallError(TidalError):
    """The model's package could not be installed."""


def _download_s3(uri: str, into: Path) -> Path:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    name = PurePosixPath(key).name
    if not bucket or not name:
        raise InstallError(f"package {uri!r}: an S3 URI must be s3://bucket/path/file.whl")
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    target = into / name
    try:
        boto3.client("s3").download_file(bucket, key, str(target))
    except (BotoCoreError, ClientError) as exc:
        raise InstallError(f"package {uri!r}: cannot download it: {exc}") from exc
    return target


def install(package: str, *, python: str = sys.executable) -> None:
    """``pip install`` ``package`` with ``python``'s pip; ``InstallError`` saying why if it fails."""
    with tempfile.TemporaryDirectory(prefix="tidal-package-") as tmp:
        requirement = str(_download_s3(package, Path(tmp))) if package.startswith("s3://") else package
        try:
            done = subprocess.run(
                [python, "-m", "pip", "install", "--no-input", "--disable-pip-version-check", requirement],
                capture_output=True, text=True, check=False,
            )
        except OSError as exc:
            raise InstallError(f"package {package!r}: cannot run pip: {exc}") from exc
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise InstallError(f"package {package!r}: pip install failed: {' | '.join(tail)}")

