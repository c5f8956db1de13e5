"""How the chain layer connects: embedded or JSON-RPC, expected chain, tx policy."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from notary.chain.retry import RetryPolicy

__all__ = ["DEFAULT_EMBEDDED_CHAIN_ID", "ChainSettings"]

#: Chain ID of the embedded chain unless configured otherwise (not used by public networks).
DEFAULT_EMBEDDED_CHAIN_ID = 424242


@dataclass(frozen=True, kw_only=True)
class ChainSettings:
    """Everything :meth:`notary.chain.ChainClient.open` needs besides the signer.

    ``rpc_url=None`` selects the embedded chain, persisted under ``data_dir/chain/``.
    Contract addresses come from the arguments, else from ``data_dir/chain.json``, else the
    contracts are deployed (when ``deploy`` is true) and ``chain.json`` is written.
    """

    data_dir: Path
    rpc_url: str | None = None
    #: Refuse to start unless the node reports this chain ID. Embedded: the ID of a new
    #: chain (default 424242); ``None`` accepts the ID of an existing one.
    chain_id: int | None = None
    registry_address: str | None = None
    notary_address: str | None = None
    deploy: bool = True
    #: A transaction is final when its block has ``confirmations - 1`` blocks on top: 1 on
    #: chains with instant finality (Besu QBFT, the embedded chain); more on chains that
    #: can reorganise (docs/receipts.md, "Finality").
    confirmations: int = 1
    #: Seconds between scheduling and accepting a transfer of the contracts' admin role
    #: (OpenZeppelin AccessControlDefaultAdminRules) in contracts deployed from here.
    admin_delay_s: int = 2 * 24 * 3600
    gas_margin: float = 1.2
    receipt_timeout_s: float = 120.0
    #: A sent transaction the node knows neither as mined nor as pending for this long is
    #: given up (the nonce cache is dropped and the batch is sent again).
    dropped_after_s: float = 5.0
    poll_interval_s: float = 0.05
    request_timeout_s: float = 10.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    #: Block gas limit of a newly created embedded chain (a mainnet-like 60M).
    embedded_gas_limit: int = 60_000_000
    #: Genesis balance of the signer on a newly created embedded chain.
    embedded_genesis_balance_wei: int = 10**24

    def __post_init__(self) -> None:
        if self.confirmations < 1:
            raise ValueError("confirmations must be at least 1")
        if self.gas_margin < 1.0:
            raise ValueError("gas_margin must be at least 1.0")
        if not 0 <= self.admin_delay_s < 2**48:
            raise ValueError("admin_delay_s must fit in uint48")

    @property
    def embedded(self) -> bool:
        return self.rpc_url is None
