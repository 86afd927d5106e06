"""The narrow interface between the autoscaler and whatever runs workers.

Every provider is assumed to be:

- **eventually consistent**: an instance launched a moment ago may be missing from
  ``list_instances`` and one terminated may still be listed. The autoscaler reconciles on
  every tick and never trusts that its last call took effect.
- **idempotent on launch**: ``launch`` with the same ``token`` twice starts the instances
  once. A retried cron run must not double-launch.
- **safe to terminate twice**: terminating an unknown or already-gone instance is not an error.

Errors are raised as :mod:`core.errors` ``ProviderError`` subclasses (``CapacityError``,
``ThrottledError``), never as the provider's own exception types.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

InstanceState = Literal["pending", "running", "stopping", "terminated"]


@dataclass(frozen=True, slots=True)
class Instance:
    id: str
    pool: str  # the model whose workers it runs
    state: InstanceState
    launched_at: float  # epoch seconds
    instance_type: str | None = None
    subnet: str | None = None
    capacity: int = 1  # workers it runs: one per GPU, at least one


class Provider(Protocol):
    name: str

    def list_instances(self, pool: str | None = None) -> list[Instance]:
        """Instances this provider manages for Tidal (optionally one pool), terminated ones excluded."""
        ...

    def launch(self, pool: str, workers: int, token: str) -> list[Instance]:
        """Start instances for at least ``workers`` workers of ``pool`` (one per GPU); idempotent per ``token``.

        How many instances that takes depends on the instance type the provider lands on.
        """
        ...

    def terminate(self, instance_ids: Sequence[str]) -> None:
        """Stop these instances; unknown ids are ignored."""
        ...
