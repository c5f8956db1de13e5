"""The notary: authenticated telemetry in, attested records on an EVM chain, receipts out."""

import os
from importlib.util import find_spec

# eth-hash takes pycryptodome before pysha3 when both are installed, yet pysha3's keccak256
# costs a seventh as much a call, and py-evm hashes every trie node it touches: about a
# third of the embedded chain's CPU. This is eth-hash's documented switch; an operator's
# own ETH_HASH_BACKEND wins, and without pysha3 (module ``sha3``) eth-hash keeps choosing.
# eth-hash reads it at the first keccak, so it is set here, before the package hashes.
if find_spec("sha3") is not None:
    os.environ.setdefault("ETH_HASH_BACKEND", "pysha3")

from notary.errors import NotaryError

__all__ = ["NotaryError"]
