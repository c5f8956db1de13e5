"""QKD channel: simulated decoy-state BB84 link, post-processing, ETSI GS QKD 014 KMEs, envelopes.

Everything else in the project (the notary, the swap tool) depends on this package; it
depends on none of them.
"""

from qkd_channel.errors import QKDError

__all__ = ["QKDError"]
