"""The device SDK is tested against the real stack of ``tests/notary`` (KMEs, notary,
Mosquitto): its fixtures are shared from there."""

from tests.notary.conftest import mosquitto

__all__ = ["mosquitto"]
