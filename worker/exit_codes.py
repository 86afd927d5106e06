"""Exit statuses of ``tidal worker`` that mean something to whatever restarts it (systemd, a parent).

Values from BSD's ``sysexits.h``, so they read the same in ``systemctl status`` as elsewhere.
"""

from __future__ import annotations

from typing import Final

# The model cannot run here: unknown to the config file and the registry, or its handler cannot
# be imported or loaded. Restarting gives the same result, so the systemd unit lists it in
# RestartPreventExitStatus and the autoscaler is told through the registry's boot errors.
EXIT_CONFIG: Final = 78
# A handler ignored its timeout: the process must go so the GPU is freed; a restart is right.
EXIT_WEDGED: Final = 70
