"""When ``tidal up`` restarts a child that exited: soon after a one-off crash, ever later for one that keeps crashing.

Pure: the child's history in, the delay and its new history out.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    first_s: float = 0.25  # a killed Redis or API should be back within about a second
    factor: float = 2.0
    max_s: float = 30.0
    # A child that ran this long had recovered: its next exit counts as a first crash again.
    stable_s: float = 10.0

    def after_exit(self, crashes_in_a_row: int, ran_s: float) -> tuple[float, int]:
        """(seconds to wait before the restart, crashes in a row counting this one)."""
        crashes = 1 if ran_s >= self.stable_s else crashes_in_a_row + 1
        return min(self.max_s, self.first_s * self.factor ** (crashes - 1)), crashes
