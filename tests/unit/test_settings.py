from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import ConfigError
from core.settings import load_settings

GOOD = """
[api]
port = 8100
[models.echo]
handler = "worker.handlers.echo:Echo"
max_workers = 3
"""


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # The suite itself may run with REDIS_URL or TIDAL_* set; these tests need only their own.
    import os

    for name in list(os.environ):
        if name == "REDIS_URL" or name.startswith("TIDAL_"):
            monkeypatch.delenv(name)


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "tidal.toml"
    p.write_text(text)
    return p


def test_file_is_read_and_environment_overrides_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIDAL_API__PORT", "8200")
    monkeypatch.setenv("TIDAL_MODELS__ECHO__LOCAL_WORKERS", "5")
    monkeypatch.setenv("REDIS_URL", "rediss://user:secret@cache.example:6380/0")
    s = load_settings(write(tmp_path, GOOD))
    assert s.api.port == 8200
    assert s.models["echo"].local_workers == 5
    assert s.models["echo"].max_workers == 3
    assert s.models["echo"].handler == "worker.handlers.echo:Echo"
    assert s.redis.url == "rediss://user:secret@cache.example:6380/0"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[models.echo]\nhandler = "x:Y"\nmin_workers = 5\nmax_workers = 2',
            "models.echo: min_workers 5 > max_workers 2",
        ),
        ('[models.echo]\nhandler = "x:Y"\ntimeout_s = 0', "models.echo.timeout_s"),
        ('[models.echo]\nhandler = "not a path"', "models.echo.handler"),
        ("[models.echo]\n", "models.echo.handler: Field required"),
        ('[models.echo]\nhandler = "x:Y"\npolicy = "fastest"', "models.echo.policy"),
        ('[models.echo]\nhandler = "x:Y"\ncolour = "blue"', "models.echo.colour: Extra inputs are not permitted"),
        ('[models.Bad_Name]\nhandler = "x:Y"', "model name 'Bad_Name'"),
        ('[redis]\nurl = "http://x"', "redis.url: must start with redis://"),
        ("[worker]\nheartbeat_interval_s = 5\nheartbeat_ttl_s = 6", "heartbeat_ttl_s 6.0 must exceed"),
        ("[autoscaler]\nlock_ttl_s = 3", "autoscaler: lease_ttl_s 5.0 > lock_ttl_s 3.0"),
        ("[api\n", "not valid TOML"),
    ],
)
def test_errors_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(write(tmp_path, text))
    assert message in str(err.value)


def test_bad_environment_value_names_the_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIDAL_API__PORT", "eighty")
    with pytest.raises(ConfigError, match=r"api\.port"):
        load_settings(write(tmp_path, GOOD))


def test_missing_explicit_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.toml")


def test_shipped_sample_config_is_valid() -> None:
    s = load_settings(Path(__file__).parents[2] / "tidal.toml")
    assert {"echo", "sleep"} <= set(s.models)
