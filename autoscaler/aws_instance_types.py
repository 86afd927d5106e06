"""How many workers an EC2 instance runs: one per GPU of its instance type, at least one.

GPU counts come from ``DescribeInstanceTypes`` and are kept for the life of the process (an
instance type's hardware does not change); a launch template's own instance type, used when
a pool names none, from ``DescribeLaunchTemplateVersions``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from functools import partial
from typing import Any, Final

from botocore.exceptions import BotoCoreError, ClientError

from autoscaler.aws_errors import translate

_TYPES_PER_CALL: Final = 100  # DescribeInstanceTypes' limit on InstanceTypes

Call = Callable[[str, Callable[[], dict[str, Any]]], dict[str, Any]]  # (operation, thunk) -> reply


def gpu_count(description: Mapping[str, Any]) -> int:
    """GPUs of one ``DescribeInstanceTypes`` entry (0 for a type without GPUs)."""
    gpus = description.get("GpuInfo", {}).get("Gpus", [])
    return sum(int(g.get("Count", 0)) for g in gpus)


class InstanceTypes:
    def __init__(self, ec2: Any, call: Call) -> None:
        """``call`` runs one EC2 API call with the provider's retry policy."""
        self._ec2 = ec2
        self._call = call
        self._gpus: dict[str, int] = {}
        self._template_types: dict[tuple[tuple[str, str], ...], str] = {}

    def workers(self, instance_type: str | None) -> int:
        """Workers an instance of a type already learned runs; 1 for an unknown type."""
        if instance_type is None:
            return 1
        return max(1, self._gpus.get(instance_type, 0))

    def learn(self, instance_types: Iterable[str | None]) -> None:
        """Look up every type not yet known, in as few calls as the API allows."""
        missing = sorted({t for t in instance_types if t is not None and t not in self._gpus})
        for start in range(0, len(missing), _TYPES_PER_CALL):
            chunk = missing[start : start + _TYPES_PER_CALL]
            reply = self._request(
                "DescribeInstanceTypes", partial(self._ec2.describe_instance_types, InstanceTypes=chunk)
            )
            for d in reply.get("InstanceTypes", []):
                self._gpus[d["InstanceType"]] = gpu_count(d)
            for t in chunk:
                self._gpus.setdefault(t, 0)  # not described: treat as GPU-less rather than ask again

    def template_type(self, template: Mapping[str, str]) -> str | None:
        """The instance type a launch template version sets, if any."""
        key = tuple(sorted(template.items()))
        if key not in self._template_types:
            selector = {k: v for k, v in template.items() if k != "Version"}
            reply = self._request(
                "DescribeLaunchTemplateVersions",
                lambda: self._ec2.describe_launch_template_versions(**selector, Versions=[template["Version"]]),
            )
            versions = reply.get("LaunchTemplateVersions", [])
            found = versions[0].get("LaunchTemplateData", {}).get("InstanceType") if versions else None
            if found is None:
                return None
            self._template_types[key] = found
        return self._template_types[key]

    def _request(self, operation: str, thunk: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        try:
            return self._call(operation, thunk)
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, operation) from exc
