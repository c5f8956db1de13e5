"""Reproducible link runs for tests.

``simulate`` draws the parties' choices from ``os.urandom`` unless told otherwise; a test
that needs the same run every time passes both sources seeded, from independent streams
(one seed for both would correlate the channel with the choices).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def seeded(seed: int) -> dict[str, Any]:
    """``simulate`` keyword arguments: the channel's generator and the parties' bytes."""
    return {
        "rng": np.random.default_rng(seed),
        "random_bytes": np.random.default_rng([seed, 1]).bytes,
    }
