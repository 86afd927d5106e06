"""The composition root: the ``tidal`` command and ``tidal up``. It imports every role; nothing imports it."""
