"""The typed ``autoscaler.aws`` section: per-pool resolution and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from autoscaler.aws_ec2 import AwsEc2Provider
from autoscaler.aws_launch_spec import resolve
from core.errors import ConfigError
from core.settings import AwsPoolSettings, AwsSettings, load_settings

_MODELS = """
[models.echo]
handler = "worker.handlers.echo:handle"
[models.llm]
handler = "worker.handlers.echo:handle"
"""


def test_pool_overrides_fall_back_to_the_section_defaults() -> None:
    aws = AwsSettings(
        launch_template_name="tidal-worker",
        instance_types=["m7i.large"],
        subnet_ids=["subnet-a", "subnet-b"],
        pools={"llm": AwsPoolSettings(launch_template_id="lt-0abc", launch_template_version="3", spot=True)},
    )
    echo, llm = resolve(aws, "echo"), resolve(aws, "llm")

    assert echo.template == {"LaunchTemplateName": "tidal-worker", "Version": "$Default"}
    assert (echo.spot, llm.spot) == (False, True)
    assert llm.template == {"LaunchTemplateId": "lt-0abc", "Version": "3"}
    assert llm.offerings() == [("m7i.large", "subnet-a"), ("m7i.large", "subnet-b")]


def test_empty_lists_mean_the_templates_own_type_and_subnet() -> None:
    spec = resolve(AwsSettings(launch_template_name="tidal-worker"), "echo")
    assert spec.offerings() == [(None, None)]


def test_a_pool_without_any_template_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"autoscaler\.aws\.pools\.echo\.launch_template_name"):
        resolve(AwsSettings(), "echo")


def test_file_with_bad_aws_section_names_the_key(tmp_path: Path) -> None:
    path = tmp_path / "tidal.toml"
    path.write_text("[autoscaler.aws]\nspto = true\nunavailable_ttl_s = 0\n")
    with pytest.raises(ConfigError) as err:
        load_settings(path)
    assert "autoscaler.aws.spto" in str(err.value)
    assert "autoscaler.aws.unavailable_ttl_s" in str(err.value)

    path.write_text(
        '[autoscaler.aws.pools.echo]\nlaunch_template_name = "a-b"\nlaunch_template_id = "lt-1"\n'
    )
    with pytest.raises(ConfigError, match=r"autoscaler\.aws\.pools\.echo: .*not both"):
        load_settings(path)


def test_from_settings_checks_every_model_has_a_template(tmp_path: Path, aws: str) -> None:
    path = tmp_path / "tidal.toml"
    path.write_text(
        _MODELS + '[autoscaler]\nprovider = "aws-ec2"\n'
        '[autoscaler.aws.pools.llm]\nlaunch_template_name = "tidal-gpu"\n'
    )
    with pytest.raises(ConfigError, match=r"autoscaler\.aws\.pools\.echo\.launch_template_name"):
        AwsEc2Provider.from_settings(load_settings(path))

    path.write_text(
        _MODELS + '[autoscaler.aws]\nlaunch_template_name = "tidal-worker"\n[autoscaler.aws.pools.lm]\n'
    )
    with pytest.raises(ConfigError, match=r"autoscaler\.aws\.pools\.lm: no model"):
        AwsEc2Provider.from_settings(load_settings(path))

    path.write_text(_MODELS + '[autoscaler.aws]\nlaunch_template_name = "tidal-worker"\n')
    provider = AwsEc2Provider.from_settings(load_settings(path))
    assert provider.list_instances() == []  # a working client on moto's endpoint
