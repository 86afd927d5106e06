"""Which EC2 error codes mean what, and their translation into :mod:`core.errors`.

This is the only place botocore exceptions are looked at; everything above it sees
``ProviderError`` and its subclasses.
"""

from __future__ import annotations

from typing import Final

from botocore.exceptions import BotoCoreError, ClientError

from core.errors import CapacityError, ProviderError, ThrottledError

# Codes after which the same (instance type, subnet) should not be tried again for a while,
# but another pair may well succeed. Limit errors are account-wide for an instance family,
# so another type in the list can still get through.
CAPACITY_CODES: Final = frozenset(
    {
        "InsufficientInstanceCapacity",
        "InsufficientHostCapacity",
        "InsufficientReservedInstanceCapacity",
        "InsufficientCapacity",
        "InsufficientFreeAddressesInSubnet",
        "InstanceLimitExceeded",
        "VcpuLimitExceeded",
        "MaxSpotInstanceCountExceeded",
        "SpotMaxPriceTooLow",
        "UnfulfillableCapacity",
        "Unsupported",
        "UnsupportedOperation",
    }
)

THROTTLE_CODES: Final = frozenset(
    {
        "RequestLimitExceeded",
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "EC2ThrottledException",
        "TooManyRequestsException",
        "SlowDown",
    }
)

# The id was never valid or is already gone; terminating it is a no-op by contract.
NOT_FOUND_CODES: Final = frozenset({"InvalidInstanceID.NotFound", "InvalidInstanceID.Malformed"})


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _message(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Message", "")) or str(exc)


def translate(
    exc: ClientError | BotoCoreError,
    operation: str,
    *,
    instance_type: str | None = None,
    subnet: str | None = None,
) -> ProviderError:
    """The :mod:`core.errors` exception for a failed EC2 call (to be raised ``from exc``)."""
    if isinstance(exc, BotoCoreError):
        return ProviderError(f"ec2 {operation}: {exc}")
    code = error_code(exc)
    text = f"ec2 {operation}: {code}: {_message(exc)}"
    if code in CAPACITY_CODES:
        return CapacityError(text, instance_type=instance_type, subnet=subnet)
    if code in THROTTLE_CODES:
        return ThrottledError(text)
    return ProviderError(text)
