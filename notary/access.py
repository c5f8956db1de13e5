"""Who may read what: the public sees hashes and proofs; owners and auditors see readings.

Access model (``docs/receipts.md``, "Who sees what"):

* **public** (no token): receipts without their ``disclosure`` section; explorer pages
  with hashes, proofs and chain coordinates only;
* **owner** (a token for one device): also that device's plaintexts and salts;
* **auditor** (a token for every device): every plaintext and salt;
* **admin** (``<data_dir>/admin.token``): everything, as the operator already holds the
  database.

Owner and auditor tokens are issued by ``qkd-notary token issue``, shown once, and stored
only as their SHA-256: a stolen database does not yield usable tokens.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from notary.storage.base import AccessTokenRow

__all__ = ["PUBLIC", "TOKEN_PREFIX", "Viewer", "new_access_token", "token_hash"]

#: Prefix of issued tokens, so a leaked one is recognisable (and greppable) as ours.
TOKEN_PREFIX = "qkdn_"


def new_access_token() -> str:
    """A fresh bearer token: the prefix and 256 random bits, URL-safe."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    """What the store keeps of a token (hex SHA-256; a token has 256 bits of entropy, so a
    plain hash is enough: no dictionary to search)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Viewer:
    """Whoever asks for a receipt or a page."""

    label: str
    token: AccessTokenRow | None = None
    everything: bool = False

    @property
    def signed_in(self) -> bool:
        return self.everything or self.token is not None

    def may_read(self, device_id: str) -> bool:
        """Whether this viewer may see ``device_id``'s plaintexts and salts."""
        return self.everything or (self.token is not None and self.token.covers(device_id))


PUBLIC = Viewer(label="public")
