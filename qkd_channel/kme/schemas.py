# ruff: noqa: N815  -- the field names are the standard's, mixed case included
"""JSON data formats of ETSI GS QKD 014 v1.1.1 (clause 6) and of the KME-to-KME sync API.

Field names are the standard's, verbatim (``key_ID``, ``additional_slave_SAE_IDs`` ...).
Request bodies forbid unknown fields and use strict integers so that a malformed request is
refused with HTTP 400 rather than guessed at.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

__all__ = [
    "AllocationRequest",
    "AllocationSegment",
    "ErrorBody",
    "KeyAllocationModel",
    "KeyContainer",
    "KeyIDItem",
    "KeyIDs",
    "KeyItem",
    "KeyRequest",
    "Status",
]

_Extensions = list[dict[str, Any]] | None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Status(BaseModel):
    """Status data format (ETSI GS QKD 014 clause 6.1)."""

    source_KME_ID: str
    target_KME_ID: str
    master_SAE_ID: str
    slave_SAE_ID: str
    key_size: int
    stored_key_count: int
    max_key_count: int
    max_key_per_request: int
    max_key_size: int
    min_key_size: int
    max_SAE_ID_count: int
    #: The standard's optional vendor object. This KME puts what feeds its key buffer there,
    #: ``{"key_path": {"link": "qkd"}}`` (docs/security-levels.md); absent: nothing claimed.
    status_extension: dict[str, Any] | None = None


class KeyRequest(_Strict):
    """Key request data format (clause 6.2); every field optional."""

    number: StrictInt | None = None
    size: StrictInt | None = None
    additional_slave_SAE_IDs: list[StrictStr] | None = None
    extension_mandatory: _Extensions = None
    extension_optional: _Extensions = None


class KeyItem(BaseModel):
    """One key of a Key container: UUID key ID and base64 key."""

    key_ID: str
    key: str


class KeyContainer(BaseModel):
    """Key container data format (clause 6.3)."""

    keys: list[KeyItem]


class KeyIDItem(_Strict):
    key_ID: StrictStr
    key_ID_extension: dict[str, Any] | None = None


class KeyIDs(_Strict):
    """Key IDs data format (clause 6.4)."""

    key_IDs: Annotated[list[KeyIDItem], Field(min_length=1)]
    key_IDs_extension: dict[str, Any] | None = None


class ErrorBody(BaseModel):
    """Error data format (clause 6.5)."""

    message: str
    details: list[dict[str, Any]] = Field(default_factory=list)


class AllocationSegment(_Strict):
    block_ID: StrictStr
    offset: Annotated[StrictInt, Field(ge=0)]
    length: Annotated[StrictInt, Field(gt=0)]


class KeyAllocationModel(_Strict):
    key_ID: StrictStr
    master_SAE_ID: StrictStr
    slave_SAE_IDs: Annotated[list[StrictStr], Field(min_length=1)]
    segments: Annotated[list[AllocationSegment], Field(min_length=1)]


class AllocationRequest(_Strict):
    """KME-to-KME: "these bits of my half of the pool became these keys" (not ETSI 014)."""

    source_KME_ID: StrictStr
    source_end: StrictStr
    keys: Annotated[list[KeyAllocationModel], Field(min_length=1)]
