"""The block explorer served by the notary: server-rendered pages under ``/explorer``.

Dashboard, devices and their attestation history, records with on-chain verification of
their receipts, pasted-receipt verification, blocks and transactions with the notary's
events decoded, and search. Read-only; see ``docs/explorer.md``.
"""

from notary.explorer.routes import install_explorer, router

__all__ = ["install_explorer", "router"]
