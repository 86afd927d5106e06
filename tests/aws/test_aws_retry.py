"""Full-jitter backoff around throttled calls (no AWS needed: errors are built directly)."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from autoscaler.aws_retry import Backoff
from core.errors import ThrottledError
from tests.aws.conftest import Sleeps


def _error(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "m"}}, "RunInstances")


class Flaky:
    def __init__(self, errors: list[ClientError]) -> None:
        self.errors = errors
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def test_delay_is_uniform_below_a_capped_exponential(sleeps: Sleeps) -> None:
    top = Backoff(sleep=sleeps, base_s=0.5, cap_s=5.0, rand=lambda: 1.0)
    assert [top.delay_s(n) for n in range(6)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    half = Backoff(sleep=sleeps, base_s=0.5, cap_s=5.0, rand=lambda: 0.5)
    assert half.delay_s(2) == 1.0


@pytest.mark.parametrize("code", ["RequestLimitExceeded", "Throttling", "ThrottlingException"])
def test_throttled_calls_are_retried_until_they_succeed(code: str, sleeps: Sleeps) -> None:
    fn = Flaky([_error(code), _error(code)])
    assert Backoff(sleep=sleeps, max_attempts=3, rand=lambda: 1.0).call("RunInstances", fn) == "ok"
    assert fn.calls == 3
    assert sleeps.calls == [0.5, 1.0]


def test_giving_up_raises_throttled_error_chained_to_the_aws_error(sleeps: Sleeps) -> None:
    fn = Flaky([_error("RequestLimitExceeded")] * 3)
    with pytest.raises(ThrottledError, match="3 attempts") as err:
        Backoff(sleep=sleeps, max_attempts=3).call("RunInstances", fn)
    assert isinstance(err.value.__cause__, ClientError)
    assert fn.calls == 3
    assert len(sleeps.calls) == 2


def test_other_errors_are_not_retried(sleeps: Sleeps) -> None:
    fn = Flaky([_error("UnauthorizedOperation")])
    with pytest.raises(ClientError):
        Backoff(sleep=sleeps).call("RunInstances", fn)
    assert fn.calls == 1
    assert sleeps.calls == []
