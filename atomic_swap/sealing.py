"""Swap terms sealed with QKD keys: what travels between the two parties.

The sealer is the *master* SAE for its message: it asks its KME for fresh keys
(``enc_keys``) shared with the peer SAE and seals with them; the receiver, as *slave* SAE,
asks its own KME for the same keys by the IDs in the envelope header (``dec_keys``). The
default mode is ``otp`` (one-time pad + one-time Poly1305 MAC), so the terms are protected
information-theoretically, given the QKD keys. Given the peer's ML-KEM-768 public key, the
channel seals ``hybrid`` instead (AES-256-GCM under HKDF of one QKD key and an ML-KEM
secret encapsulated to the peer, :mod:`qkd_channel.hybrid`): the terms stay confidential
if either the QKD key path or ML-KEM holds, e.g. when a party's KME is reached over a
classical TLS hop that could be recorded now and broken later. A hybrid envelope is opened
with our own ML-KEM key.

Anything the KME source can provide keys through works (``KeySource``); the CLI uses
:class:`qkd_channel.kme.client.KMEClient`.

Two things make a swap survive failures around the KME, which hands each key out only once:

* :meth:`TermsChannel.reserve` obtains the keys for a message *before* the message is final
  (``initiate`` gets them before it locks any funds, so a KME that is down costs nothing);
* :meth:`TermsChannel.open` keeps what an envelope opened to in the swap home (fsynced)
  before returning it, so opening the same envelope again — a retry after a node error, a
  wrong API token, a crash — needs no KME. A replayed envelope thus yields the same terms,
  never new ones; ``participate`` answers it with the HTLC it already made.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from atomic_swap.errors import EnvelopeRefused
from atomic_swap.store import SwapStore
from atomic_swap.terms import Acceptance, Offer, parse_message
from qkd_channel.envelope import AEAD_KEY_BYTES, Envelope, Mode, keys_needed, open_envelope, seal
from qkd_channel.errors import EnvelopeRejected, KMEError, QKDError
from qkd_channel.hybrid import KEM_KEY_ID_BYTES, HybridKey, KEMPrivateKey, KEMPublicKey
from qkd_channel.keys import QKDKey

__all__ = ["KEM_KEY_FILE", "KeySource", "ReservedKeys", "TermsChannel"]

#: Our ML-KEM-768 key in the swap home (``qswap kem-key new``), public half beside it.
KEM_KEY_FILE = "kem-mlkem768.key"


class KeySource(Protocol):
    """The two ETSI GS QKD 014 calls an SAE makes (``KMEClient`` satisfies this)."""

    def enc_keys(self, slave_sae_id: str, *, number: int = 1, size: int = 256) -> list[QKDKey]:
        """Fresh keys shared with ``slave_sae_id`` (we are master)."""
        ...

    def dec_keys(self, master_sae_id: str, key_ids: Iterable[str]) -> list[QKDKey]:
        """The keys ``master_sae_id`` obtained, by ID (we are slave)."""
        ...


@dataclass(frozen=True)
class ReservedKeys:
    """QKD keys obtained for one message of at most ``capacity`` plaintext bytes."""

    keys: list[QKDKey] = field(repr=False)
    capacity: int


class TermsChannel:
    """Seals our messages to one peer SAE and opens the peer's messages to us.

    ``peer_kem_key`` (the peer's ML-KEM-768 public key, pinned) makes our envelopes
    ``hybrid``; ``kem_key`` (ours) opens the peer's hybrid envelopes.
    """

    def __init__(
        self,
        keys: KeySource,
        store: SwapStore,
        *,
        sae_id: str,
        peer_sae_id: str,
        mode: Mode = Mode.OTP,
        key_bits: int = 256,
        kem_key: KEMPrivateKey | None = None,
        peer_kem_key: KEMPublicKey | None = None,
    ) -> None:
        if (mode is Mode.HYBRID) != (peer_kem_key is not None):
            raise ValueError("hybrid sealing takes the peer's ML-KEM public key, and only it")
        self._keys = keys
        self._store = store
        self.sae_id = sae_id
        self.peer_sae_id = peer_sae_id
        self._mode = mode
        self._key_bits = key_bits
        self._kem_key = kem_key
        self._peer_kem_key = peer_kem_key

    @property
    def mode(self) -> Mode:
        """How our envelopes are sealed."""
        return self._mode

    def reserve(self, capacity: int) -> ReservedKeys:
        """Fresh keys shared with the peer, enough to seal ``capacity`` plaintext bytes."""
        if self._mode.uses_sessions:  # one 256-bit key, whatever the plaintext's size
            number, size = 1, 8 * AEAD_KEY_BYTES
        else:
            size = self._key_bits
            number = math.ceil(keys_needed(self._mode, capacity) * 8 / size)
        try:
            keys = self._keys.enc_keys(self.peer_sae_id, number=number, size=size)
        except KMEError as exc:
            raise EnvelopeRefused(f"could not get QKD keys from our KME: {exc}") from exc
        except OSError as exc:
            raise EnvelopeRefused(f"our KME is unreachable: {exc}") from exc
        return ReservedKeys(keys, capacity)

    def seal(self, message: Offer | Acceptance, reserved: ReservedKeys | None = None) -> str:
        """The message as a sealed envelope in JSON form (with ``reserved`` keys if given)."""
        plaintext = message.model_dump_json().encode()
        if reserved is None:
            reserved = self.reserve(len(plaintext))
        elif len(plaintext) > reserved.capacity:
            raise ValueError("the message outgrew the keys reserved for it")
        keys = reserved.keys
        if self._peer_kem_key is not None:  # a fresh encapsulation for every message
            keys = [HybridKey.for_sender(keys[0], self._peer_kem_key)]
        envelope = seal(
            plaintext,
            sender=self.sae_id,
            recipient=self.peer_sae_id,
            sequence=self._store.next_sequence(self.peer_sae_id),
            mode=self._mode,
            keys=keys,
        )
        return envelope.to_json()

    def open(self, text: str) -> Offer | Acceptance:
        """Authenticate and decrypt a peer's envelope; refuse tampered, foreign or replayed ones.

        An envelope opened before (same digest) is answered from the swap home, without the
        KME; a new one is opened with the KME and its terms are kept before returning.
        """
        try:
            envelope = Envelope.from_json(text)
        except (QKDError, ValueError) as exc:
            raise EnvelopeRefused("not a well-formed sealed envelope") from exc
        digest = hashlib.sha256(envelope.to_json().encode()).hexdigest()
        kept = self._store.opened_terms(digest)
        if kept is not None and (kept["sender"], kept["recipient"]) == (
            self.peer_sae_id,
            self.sae_id,
        ):
            return parse_message(kept["plaintext"].encode())
        if envelope.sender != self.peer_sae_id or envelope.recipient != self.sae_id:
            # Checked again after the MAC below; this early check only avoids burning keys
            # on envelopes that are plainly not ours.
            raise EnvelopeRefused(
                f"envelope from {envelope.sender!r} to {envelope.recipient!r} is not for "
                f"{self.sae_id!r} from {self.peer_sae_id!r}"
            )
        if envelope.mode is Mode.HYBRID and (
            self._kem_key is None
            or envelope.kem_params[:KEM_KEY_ID_BYTES] != self._kem_key.public_key.key_id
        ):  # refused before the KME spends the keys on an envelope we cannot open
            raise EnvelopeRefused(
                "a hybrid envelope opens only with our ML-KEM key (qswap kem-key new), "
                "and this one was sealed to another"
            )
        try:
            keys = self._keys.dec_keys(envelope.sender, envelope.key_ids)
        except KMEError as exc:
            raise EnvelopeRefused(
                "our KME does not hold the keys this envelope names (tampered, replayed "
                f"or not shared with us): {exc}"
            ) from exc
        except OSError as exc:
            raise EnvelopeRefused(f"our KME is unreachable: {exc}") from exc
        try:
            if envelope.mode is Mode.HYBRID and self._kem_key is not None:
                if len(keys) != 1:
                    raise EnvelopeRejected("wrong-key")
                keys = [HybridKey.for_recipient(keys[0], envelope.kem_params, self._kem_key)]
            opened = open_envelope(
                envelope,
                keys,
                expected_sender=self.peer_sae_id,
                expected_recipient=self.sae_id,
            )
        except EnvelopeRejected as exc:
            raise EnvelopeRefused("envelope failed authentication (tampered or forged)") from exc
        self._store.check_sequence(envelope.sender, envelope.sequence)
        message = parse_message(opened.plaintext)
        self._store.keep_terms(
            digest,
            {
                "sender": envelope.sender,
                "recipient": envelope.recipient,
                "sequence": envelope.sequence,
                "plaintext": opened.plaintext.decode(),
            },
        )
        self._store.accept_sequence(envelope.sender, envelope.sequence)
        return message
