"""Where a running notary gets its chain client: opened in the background, re-opened after
a redeployment, never a reason not to start.

``qkd-notary serve`` must come up while its chain node is down: intake needs no chain, and
a notary that crashes during a node outage would otherwise stay down for the whole
outage. :class:`ChainSource` holds what opening needs (settings, the decrypted signer);
the service (:meth:`notary.service.NotaryService.start`) asks it in the background with
backoff and attaches the client once the node answers, and asks it again for new contracts
when an operator redeploys (:mod:`notary.redeploy`).
"""

from __future__ import annotations

from eth_account.signers.local import LocalAccount

from notary.chain.client import ChainClient
from notary.chain.settings import ChainSettings

__all__ = ["ChainSource"]


class ChainSource:
    """Opens :class:`ChainClient` s for one data directory and signer (blocking calls)."""

    def __init__(self, settings: ChainSettings, signer: LocalAccount) -> None:
        self.settings = settings
        self._signer = signer

    def open(self) -> ChainClient:
        """Attach to the recorded contracts (raises ``ChainUnavailable`` while the node is
        down, ``ChainReset`` when it lost them, ``ChainMisconfigured`` otherwise)."""
        return ChainClient.open(self.settings, self._signer)

    def redeploy(self) -> ChainClient:
        """Deploy new contracts and record them in ``chain.json`` instead of the old ones."""
        return ChainClient.open(self.settings, self._signer, redeploy=True)
