"""Tidal's own exception tree. Redis and botocore errors are translated into it at the edge."""

from __future__ import annotations


class TidalError(Exception):
    """Base of every error Tidal raises on purpose."""


class ConfigError(TidalError):
    """The configuration is invalid; the message names the key."""


class StoreUnavailable(TidalError):
    """Redis could not be reached or answered with an error."""


class ProviderError(TidalError):
    """A compute provider call failed."""


class CapacityError(ProviderError):
    """The provider has no capacity for this (instance type, subnet) right now."""

    def __init__(self, message: str, *, instance_type: str | None = None, subnet: str | None = None):
        super().__init__(message)
        self.instance_type = instance_type
        self.subnet = subnet


class ThrottledError(ProviderError):
    """The provider asked us to slow down; retry with backoff."""
