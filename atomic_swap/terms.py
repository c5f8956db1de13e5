# py-algorand-sdk leaves many public functions unannotated.
# mypy: disable-error-code="no-untyped-call"
"""The two messages of a swap, as they travel inside QKD-sealed envelopes.

``Offer`` (initiator → participant) names the hashlock, the initiator's HTLC and what the
initiator wants in return; ``Acceptance`` (participant → initiator) names the participant's
HTLC. Both are parsed strictly (unknown or missing fields are refused) even though they
arrive authenticated: a bug on the other side must not become a wrong swap on ours.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from algosdk.encoding import is_valid_address
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
)

from atomic_swap.errors import EnvelopeRefused
from qkd_channel import boundedjson

__all__ = ["Acceptance", "Network", "Offer", "parse_message"]

SwapID = Annotated[
    str,
    StringConstraints(pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"),
]
"""A lowercase UUID: it names a file in the local swap store, so nothing else is accepted."""
Hex32 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


def _checked_address(value: str) -> str:
    if not is_valid_address(value):
        raise ValueError("not an Algorand address (bad length, alphabet or checksum)")
    return value


Address = Annotated[
    str, StringConstraints(pattern=r"^[A-Z2-7]{58}$"), AfterValidator(_checked_address)
]
Amount = Annotated[int, Field(gt=0, lt=2**64)]
AssetID = Annotated[int, Field(ge=0, lt=2**64)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Network(_Strict):
    """An Algorand network as its genesis block names it."""

    genesis_id: str
    genesis_hash: str


class Offer(_Strict):
    """Initiator's terms: its funded HTLC on network A and what it wants on network B."""

    type: Literal["qswap.offer"] = "qswap.offer"
    version: Literal[1] = 1
    swap_id: SwapID
    hashlock: Hex32
    network: Network
    app_id: Annotated[int, Field(gt=0)]
    asset_id: AssetID
    amount: Amount
    deadline: int
    initiator: Address
    participant: Address
    want_asset_id: AssetID
    want_amount: Amount
    receive_address: Address


class Acceptance(_Strict):
    """Participant's answer: its funded HTLC on network B, locked by the same hashlock."""

    type: Literal["qswap.acceptance"] = "qswap.acceptance"
    version: Literal[1] = 1
    swap_id: SwapID
    hashlock: Hex32
    network: Network
    app_id: Annotated[int, Field(gt=0)]
    asset_id: AssetID
    amount: Amount
    deadline: int
    participant: Address
    receive_address: Address


def parse_message(plaintext: bytes) -> Offer | Acceptance:
    """Decode an opened envelope's plaintext into an ``Offer`` or ``Acceptance``."""
    try:
        obj: Any = boundedjson.loads(plaintext)
        kind = obj.get("type") if isinstance(obj, dict) else None
        if kind == "qswap.offer":
            return Offer.model_validate(obj)
        if kind == "qswap.acceptance":
            return Acceptance.model_validate(obj)
    except (ValueError, ValidationError) as exc:
        raise EnvelopeRefused("the envelope opened but does not hold valid swap terms") from exc
    raise EnvelopeRefused("the envelope opened but does not hold swap terms")
