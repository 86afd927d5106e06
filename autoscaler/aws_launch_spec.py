"""How one pool's instances are launched: its launch template and the offerings to try."""

from __future__ import annotations

from dataclasses import dataclass

from autoscaler.unavailable import Offering
from core.errors import ConfigError
from core.settings import AwsSettings


@dataclass(frozen=True, slots=True)
class LaunchSpec:
    template: dict[str, str]  # RunInstances' LaunchTemplate parameter
    instance_types: tuple[str, ...]
    subnet_ids: tuple[str, ...]
    spot: bool

    def offerings(self) -> list[Offering]:
        """(instance type, subnet) pairs in preference order: every subnet of the first type first.

        An empty list means "whatever the launch template says", written as None.
        """
        types: tuple[str | None, ...] = self.instance_types or (None,)
        subnets: tuple[str | None, ...] = self.subnet_ids or (None,)
        return [(t, s) for t in types for s in subnets]


def resolve(aws: AwsSettings, pool: str) -> LaunchSpec:
    """The pool's spec: its ``autoscaler.aws.pools.<pool>`` overrides over the section defaults."""
    over = aws.pools.get(pool)
    name, lt_id = aws.launch_template_name, aws.launch_template_id
    if over is not None and (over.launch_template_name or over.launch_template_id):
        name, lt_id = over.launch_template_name, over.launch_template_id
    version = (over.launch_template_version if over else None) or aws.launch_template_version
    if lt_id:
        template = {"LaunchTemplateId": lt_id, "Version": version}
    elif name:
        template = {"LaunchTemplateName": name, "Version": version}
    else:
        raise ConfigError(
            f"autoscaler.aws.pools.{pool}.launch_template_name: pool {pool!r} has no launch template "
            "(set it there or autoscaler.aws.launch_template_name)"
        )
    types = over.instance_types if over and over.instance_types is not None else aws.instance_types
    subnets = over.subnet_ids if over and over.subnet_ids is not None else aws.subnet_ids
    spot = over.spot if over and over.spot is not None else aws.spot
    return LaunchSpec(template, tuple(types), tuple(subnets), spot)
