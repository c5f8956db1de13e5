"""The notary: authenticated telemetry in, attested records on an EVM chain, receipts out."""

from notary.errors import NotaryError

__all__ = ["NotaryError"]
