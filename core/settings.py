"""Typed configuration: ``tidal.toml`` overridden by ``TIDAL_*`` variables and ``REDIS_URL``.

Everything is validated when it is loaded; an error names the key that is wrong.
Nothing here connects to anything.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from core.errors import ConfigError

PolicyName = Literal[
    "least-backlog", "weighted", "round-robin", "least-connections", "least-latency", "hash", "random"
]
POLICY_NAMES: tuple[str, ...] = PolicyName.__args__  # type: ignore[attr-defined]

MODEL_NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelSettings(_Section):
    handler: str = Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$", description="module:attribute")
    version: str = "1"
    timeout_s: int = Field(default=300, gt=0, description="default job execution timeout")
    ttl_s: int = Field(default=86_400, gt=0, description="how long a job may wait before it starts")
    max_queue_len: int = Field(default=10_000, gt=0)
    max_attempts: int = Field(default=3, ge=1, description="runs a job may get when workers die")
    policy: PolicyName = "least-backlog"
    prefetch: int | None = Field(
        default=None, ge=1, description="jobs a worker may hold (queued + running); default: its slots"
    )
    slots: int = Field(default=1, ge=1, description="jobs one worker runs at once")
    weight: float = Field(default=1.0, gt=0)
    local_workers: int = Field(default=1, ge=0, description="workers `tidal up` starts without autoscaler")
    min_workers: int = Field(default=0, ge=0)
    max_workers: int = Field(default=4, ge=0)
    mean_run_s: float = Field(
        default=1.0, gt=0, description="typical job run time; the autoscaler starts from it and learns the real one"
    )
    target_wait_p95_s: float | None = Field(
        default=None, gt=0,
        description="SLO: p95 of the wait before a job starts; default: [autoscaler] acceptable_wait_s",
    )
    cost_bias: float = Field(
        default=1.0, ge=0, description="GPU time worth spending to avoid one late job, in cold starts (0: cost only)"
    )
    max_gpu_hours_per_day: float | None = Field(
        default=None, gt=0, description="past this (rolling day), no GPU time is spent on idle capacity"
    )
    options: dict[str, Any] = Field(default_factory=dict, description="keyword arguments for the handler")
    package: str | None = Field(
        default=None,
        max_length=2048,
        # One pip argument, never a shell word: no spaces, quotes or shell metacharacters.
        pattern=r"^[A-Za-z0-9][^\s'\"`$\\;|&()]*$",
        description="pip requirement with the handler's code, installed on EC2 workers at boot: "
        "'mymodels==1.2', a wheel URL, an s3:// URI or 'git+https://…'",
    )

    @model_validator(mode="after")
    def _bounds(self) -> ModelSettings:
        if self.min_workers > self.max_workers:
            raise ValueError(f"min_workers {self.min_workers} > max_workers {self.max_workers}")
        return self


class ApiSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    max_body_bytes: int = Field(default=10 * 1024 * 1024, gt=0)
    max_wait_s: float = Field(default=60.0, gt=0)
    result_ttl_s: int = Field(default=1800, gt=0, description="how long a finished job is kept")


class RedisSettings(_Section):
    url: str | None = Field(default=None, description="empty: start an embedded Valkey")
    data_dir: Path = Path(".tidal/valkey")
    port: int = Field(default=0, ge=0, le=65535, description="embedded server port; 0 picks a free one")

    @field_validator("url")
    @classmethod
    def _scheme(cls, v: str | None) -> str | None:
        if v in (None, ""):
            return None
        if not v.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return v


class WorkerSettings(_Section):
    heartbeat_interval_s: float = Field(default=1.0, gt=0)
    heartbeat_ttl_s: float = Field(default=5.0, gt=0)
    timeout_grace_s: float = Field(
        default=5.0, ge=0, description="after a timeout, how long a handler may run on before the worker exits"
    )

    @model_validator(mode="after")
    def _ttl(self) -> WorkerSettings:
        if self.heartbeat_ttl_s <= 2 * self.heartbeat_interval_s:
            raise ValueError(
                f"heartbeat_ttl_s {self.heartbeat_ttl_s} must exceed twice heartbeat_interval_s "
                f"{self.heartbeat_interval_s}"
            )
        return self


class DispatcherSettings(_Section):
    tick_s: float = Field(default=1.0, gt=0, description="longest wait between sweeps with no events")


class AwsPoolSettings(_Section):
    """Per-pool overrides of :class:`AwsSettings`; a field left unset takes the section default."""

    launch_template_name: str | None = Field(default=None, min_length=3, max_length=128)
    launch_template_id: str | None = Field(default=None, pattern=r"^lt-[0-9a-f]+$")
    launch_template_version: str | None = Field(default=None, pattern=r"^(\$Default|\$Latest|[1-9][0-9]*)$")
    instance_types: list[str] | None = Field(default=None, description="tried in order on capacity errors")
    subnet_ids: list[str] | None = Field(default=None, description="tried in order on capacity errors")
    spot: bool | None = None

    @model_validator(mode="after")
    def _one_template(self) -> AwsPoolSettings:
        if self.launch_template_name and self.launch_template_id:
            raise ValueError("set launch_template_name or launch_template_id, not both")
        return self


class AwsSettings(_Section):
    """The aws-ec2 provider. Credentials and region come from boto3's usual chain unless set here."""

    region: str | None = Field(default=None, description="empty: boto3's default region")
    endpoint_url: str | None = Field(default=None, description="empty: AWS; set for a local EC2 emulator")
    launch_template_name: str | None = Field(default=None, min_length=3, max_length=128)
    launch_template_id: str | None = Field(default=None, pattern=r"^lt-[0-9a-f]+$")
    launch_template_version: str = Field(default="$Default", pattern=r"^(\$Default|\$Latest|[1-9][0-9]*)$")
    instance_types: list[str] = Field(
        default_factory=list, description="tried in order on capacity errors; empty: the template's"
    )
    subnet_ids: list[str] = Field(
        default_factory=list, description="tried in order on capacity errors; empty: the template's"
    )
    spot: bool = False
    unavailable_ttl_s: float = Field(
        default=180.0, gt=0, description="how long an (instance type, subnet) that lacked capacity is skipped"
    )
    max_attempts: int = Field(default=5, ge=1, description="tries of one API call while throttled")
    backoff_base_s: float = Field(default=0.5, gt=0)
    backoff_cap_s: float = Field(default=20.0, gt=0)
    api_timeout_s: float = Field(default=10.0, gt=0, description="connect and read timeout of one API call")
    pools: dict[str, AwsPoolSettings] = Field(default_factory=dict, description="per-model overrides")

    @model_validator(mode="after")
    def _one_template(self) -> AwsSettings:
        if self.launch_template_name and self.launch_template_id:
            raise ValueError("set launch_template_name or launch_template_id, not both")
        if self.backoff_base_s > self.backoff_cap_s:
            raise ValueError(f"backoff_base_s {self.backoff_base_s} > backoff_cap_s {self.backoff_cap_s}")
        return self


class AutoscalerSettings(_Section):
    enabled: bool = False
    provider: Literal["local", "aws-ec2"] = "local"
    interval_s: float = Field(default=2.0, gt=0)
    acceptable_wait_s: float = Field(default=10.0, gt=0, description="default target_wait_p95_s of every model")
    cold_start_s: float | None = Field(
        default=None, gt=0, description="launch to taking jobs; default: 2 s for local, 90 s for aws-ec2"
    )
    scale_down_window_s: float | None = Field(
        default=None, ge=0, description="how long capacity no longer needed is kept; default: one cold start"
    )
    idle_timeout_s: float | None = Field(
        default=None, ge=0, description="cap on keep-alive with no work; default: learned per model"
    )
    boot_timeout_s: float = Field(default=600.0, gt=0)
    max_step: int = Field(default=4, ge=1)
    launch_backoff_s: float = Field(default=30.0, ge=0, description="pause for a pool after a failed launch")
    lease_ttl_s: float = Field(
        default=5.0, gt=0,
        description="the autoscaler lock's lease: how long a dead holder stops the others; renewed every third of it",
    )
    lock_ttl_s: float = Field(default=120.0, gt=0, description="longest one tick may hold the lock; then it is stopped")
    max_read_s: float = Field(
        default=15.0, gt=0, description="a fleet read slower than this is stale and the tick is skipped"
    )
    instances_dir: Path = Field(default=Path(".tidal/instances"), description="local provider records")
    stop_grace_s: float = Field(default=30.0, ge=0, description="local provider: SIGTERM to SIGKILL")
    local_gpus: str = Field(
        default="auto",
        pattern=r"^(auto|none|[A-Za-z0-9-]+(,[A-Za-z0-9-]+)*)$",
        description="local provider: GPUs to pin workers to, one worker each ('auto': nvidia-smi -L)",
    )
    max_failed_boots: int = Field(
        default=3, ge=1, description="launches in a row that never register before a pool stops launching"
    )
    aws: AwsSettings = AwsSettings()

    @model_validator(mode="after")
    def _lease(self) -> AutoscalerSettings:
        if self.lease_ttl_s > self.lock_ttl_s:
            raise ValueError(f"lease_ttl_s {self.lease_ttl_s} > lock_ttl_s {self.lock_ttl_s}")
        return self

    def typical_cold_start_s(self) -> float:
        """The provider's usual launch-to-ready time when ``cold_start_s`` is not set: a local worker
        process loads in a second or two; an EC2 instance boots and loads in about a minute and a half."""
        return 2.0 if self.provider == "local" else 90.0


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="TIDAL_", env_nested_delimiter="__", extra="forbid", case_sensitive=False
    )

    api: ApiSettings = ApiSettings()
    redis: RedisSettings = RedisSettings()
    worker: WorkerSettings = WorkerSettings()
    dispatcher: DispatcherSettings = DispatcherSettings()
    autoscaler: AutoscalerSettings = AutoscalerSettings()
    models: dict[str, ModelSettings] = Field(default_factory=dict)

    @field_validator("models")
    @classmethod
    def _names(cls, v: dict[str, ModelSettings]) -> dict[str, ModelSettings]:
        import re

        for name in v:
            if not re.match(MODEL_NAME_PATTERN, name):
                raise ValueError(f"model name {name!r} must match {MODEL_NAME_PATTERN}")
        return v

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The file arrives as init kwargs; the environment must win over it.
        return (env_settings, init_settings)


def _format(err: ValidationError, source: str) -> str:
    lines = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"].removeprefix("Value error, ")
        lines.append(f"{key}: {msg}")
    return f"invalid configuration in {source}:\n  " + "\n  ".join(lines)


def load_settings(path: str | Path | None = None) -> Settings:
    """Read ``path`` (default ``$TIDAL_CONFIG``, else ``tidal.toml`` if present) and the environment."""
    chosen = Path(path) if path else Path(os.environ.get("TIDAL_CONFIG", "tidal.toml"))
    data: dict[str, Any] = {}
    if chosen.exists():
        try:
            data = tomllib.loads(chosen.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{chosen}: not valid TOML: {exc}") from exc
    elif path:
        raise ConfigError(f"config file {chosen} does not exist")
    if os.environ.get("REDIS_URL"):
        data.setdefault("redis", {})["url"] = os.environ["REDIS_URL"]
    try:
        return Settings(**data)
    except ValidationError as exc:
        raise ConfigError(_format(exc, str(chosen))) from exc
