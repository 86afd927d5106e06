"""Error text for a failed job: the traceback, with every environment variable's value removed."""

from __future__ import annotations

import os
import traceback
from collections.abc import Mapping

# Values this short are words, not secrets; scrubbing them would shred the traceback.
_MIN_SECRET_LEN = 6


def _is_plain_path(value: str) -> bool:
    # PATH-like values and directories appear in every traceback's file names.
    return all(part.startswith(("/", "~", ".")) or part == "" for part in value.split(os.pathsep))


def scrub(text: str, environ: Mapping[str, str]) -> str:
    secrets = sorted(
        (v for v in environ.values() if len(v) >= _MIN_SECRET_LEN and not _is_plain_path(v)),
        key=len,
        reverse=True,
    )
    for value in secrets:
        text = text.replace(value, "[redacted]")
    return text


def format_error(exc: BaseException, environ: Mapping[str, str] | None = None) -> str:
    text = "".join(traceback.format_exception(exc))
    return scrub(text, os.environ if environ is None else environ)
