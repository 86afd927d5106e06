"""Handlers used only by tests."""

from __future__ import annotations

import os
from typing import Any


class Boom:
    """Fails with a message that quotes a secret from the environment."""

    def load(self) -> None:
        pass

    def predict(self, input: Any) -> Any:
        raise RuntimeError(f"could not call the model with key {os.environ.get('TIDAL_TEST_SECRET', '')}")


class GpuEnv:
    """Reports which GPU the worker process was pinned to."""

    def load(self) -> None:
        pass

    def predict(self, input: Any) -> Any:
        return {"CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES")}


class Stubborn:
    """Ignores the stop signal: sleeps the full time whatever happens."""

    def load(self) -> None:
        pass

    def predict(self, input: Any) -> Any:
        import time

        time.sleep(float(input["s"]))
        return "finished anyway"


class NotJson:
    """Returns something JSON cannot hold."""

    def load(self) -> None:
        pass

    def predict(self, input: Any) -> Any:
        return {1, 2, 3}


class Shout:
    """Upper-cases its input and adds ``suffix`` (an option, so a test can see options arrive)."""

    def __init__(self, suffix: str = "") -> None:
        self.suffix = suffix

    def load(self) -> None:
        pass

    def predict(self, input: Any) -> Any:
        return str(input).upper() + self.suffix
