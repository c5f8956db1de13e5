"""AccessControl: every state-changing function refuses an account without the role.

Runs on anvil. A refusal surfaces as ``TransactionReverted`` carrying OpenZeppelin's
decoded ``AccessControlUnauthorizedAccount(account=…, neededRole=…)``, and changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_hash.auto import keccak
from hexbytes import HexBytes

from notary.chain import ChainClient, ChainSettings, RecordInput, Role
from notary.chain.artifacts import load_artifact
from notary.chain.calldata import encode_call
from notary.errors import InvalidChainInput, TransactionReverted
from tests.conftest import AnvilNode
from tests.notary.records import chain_record

DEVICE = "role-device"
DIGEST = keccak(b"firmware v1")


@dataclass
class Parties:
    admin: ChainClient  # deployer: admin, operator and notary
    operator: ChainClient  # OPERATOR_ROLE only
    notary: ChainClient  # NOTARY_ROLE only
    outsider: ChainClient  # no role at all


def _funded(anvil: AnvilNode) -> LocalAccount:
    account: LocalAccount = Account.create()
    anvil.rpc("anvil_setBalance", [account.address, hex(10**21)])
    return account


def _attach(
    anvil: AnvilNode, base: ChainClient, account: LocalAccount, data_dir: Path
) -> ChainClient:
    settings = ChainSettings(
        data_dir=data_dir,
        rpc_url=anvil.url,
        registry_address=base.registry_address,
        notary_address=base.notary_address,
        deploy=False,
    )
    return ChainClient.open(settings, account)


@pytest.fixture(scope="module")
def parties(anvil: AnvilNode, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Parties]:
    root = tmp_path_factory.mktemp("roles")
    admin = ChainClient.open(
        ChainSettings(data_dir=root / "admin", rpc_url=anvil.url), Account.from_key(anvil.dev_key)
    )
    admin.register_device(DEVICE, sae_id="SAE-role", owner=admin.address)
    admin.attest_firmware(DEVICE, DIGEST, 1)
    operator = _attach(anvil, admin, _funded(anvil), root / "operator")
    notary = _attach(anvil, admin, _funded(anvil), root / "notary")
    outsider = _attach(anvil, admin, _funded(anvil), root / "outsider")
    admin.grant_role(Role.OPERATOR, operator.address)
    admin.grant_role(Role.NOTARY, notary.address)
    yield Parties(admin=admin, operator=operator, notary=notary, outsider=outsider)
    for client in (admin, operator, notary, outsider):
        client.close()


def _record(tag: bytes) -> RecordInput:
    return chain_record(tag, DEVICE)


Call = Callable[[ChainClient], object]

OPERATOR_CALLS: list[tuple[str, Call]] = [
    ("registerDevice", lambda c: c.register_device("new-device", sae_id="S", owner=c.address)),
    ("approveFirmware", lambda c: c.approve_firmware(DEVICE, keccak(b"firmware v2"))),
    ("deactivateDevice", lambda c: c.deactivate_device(DEVICE)),
]
NOTARY_CALLS: list[tuple[str, Call]] = [
    ("attestFirmware", lambda c: c.attest_firmware(DEVICE, keccak(b"evil firmware"), 2)),
    ("recordBatch", lambda c: c.record_batch([_record(b"r1"), _record(b"r2")])),
    (
        "anchorRoot",
        lambda c: c.anchor_root(
            keccak(b"root"), count=2, first_record_id=keccak(b"a"), last_record_id=keccak(b"b")
        ),
    ),
]
ADMIN_CALLS: list[tuple[str, Call]] = [
    ("grantRole", lambda c: c.grant_role(Role.NOTARY, c.address)),
    ("revokeRole", lambda c: c.revoke_role(Role.NOTARY, Account.create().address)),
]


def _assert_refused(client: ChainClient, call: Call, role: Role) -> None:
    with pytest.raises(TransactionReverted) as refused:
        call(client)
    reason = refused.value.revert_reason
    assert reason.startswith("AccessControlUnauthorizedAccount(")
    assert client.address.lower() in reason.lower()
    assert "0x" + role.value.hex() in reason


@pytest.mark.parametrize(
    ("call", "role"),
    [pytest.param(call, Role.OPERATOR, id=name) for name, call in OPERATOR_CALLS]
    + [pytest.param(call, Role.NOTARY, id=name) for name, call in NOTARY_CALLS]
    + [pytest.param(call, Role.ADMIN, id=name) for name, call in ADMIN_CALLS],
)
def test_outsider_is_refused(parties: Parties, call: Call, role: Role) -> None:
    _assert_refused(parties.outsider, call, role)


@pytest.mark.parametrize(
    ("name", "call"), NOTARY_CALLS + ADMIN_CALLS, ids=lambda v: v if isinstance(v, str) else ""
)
def test_operator_cannot_write_records_or_manage_roles(
    parties: Parties, name: str, call: Call
) -> None:
    role = Role.ADMIN if name in {n for n, _ in ADMIN_CALLS} else Role.NOTARY
    _assert_refused(parties.operator, call, role)


@pytest.mark.parametrize(
    ("name", "call"), OPERATOR_CALLS + ADMIN_CALLS, ids=lambda v: v if isinstance(v, str) else ""
)
def test_notary_cannot_manage_devices_or_roles(parties: Parties, name: str, call: Call) -> None:
    role = Role.ADMIN if name in {n for n, _ in ADMIN_CALLS} else Role.OPERATOR
    _assert_refused(parties.notary, call, role)


def test_refusals_changed_nothing(parties: Parties) -> None:
    device = parties.admin.get_device(DEVICE)
    assert device is not None and device.active and device.trusted
    assert device.attestation_count == 1
    assert parties.admin.get_device("new-device") is None
    assert parties.admin.get_record(keccak(b"r1")) is None
    assert parties.admin.get_anchor(keccak(b"root")) is None
    assert not parties.admin.has_role(Role.NOTARY, parties.outsider.address)
    assert not parties.admin.has_role(Role.NOTARY, parties.operator.address)


def test_granted_roles_work_and_revocation_takes_them_away(parties: Parties) -> None:
    parties.operator.register_device(
        "operator-device", sae_id="SAE-op", owner=parties.admin.address
    )
    outcome = parties.notary.record_batch([_record(b"by-notary")])
    assert outcome.recorded == (keccak(b"by-notary"),)
    parties.admin.revoke_role(Role.NOTARY, parties.notary.address)
    assert not parties.admin.has_role(Role.NOTARY, parties.notary.address)
    _assert_refused(parties.notary, lambda c: c.record_batch([_record(b"late")]), Role.NOTARY)
    parties.admin.grant_role(Role.NOTARY, parties.notary.address)


def _raw(client: ChainClient, function: str, args: list[object]) -> None:
    """Send a call straight to the TelemetryNotary, bypassing the client's own guards."""
    contract = client._notary
    client._tx.transact(function, contract.address, encode_call(contract, function, args))


def test_admin_role_cannot_be_granted_or_revoked_directly(parties: Parties) -> None:
    with pytest.raises(InvalidChainInput, match="two-step"):
        parties.admin.grant_role(Role.ADMIN, parties.operator.address)
    for function in ("grantRole", "revokeRole"):
        with pytest.raises(TransactionReverted, match=r"AccessControlEnforcedDefaultAdminRules\("):
            _raw(parties.admin, function, [Role.ADMIN.value, parties.operator.address])


def test_admin_transfer_is_two_step_and_delayed(anvil: AnvilNode, parties: Parties) -> None:
    admin, successor = parties.admin, parties.outsider
    admin_before, _, _, delay = admin.admin_state()
    assert admin_before == admin.address and delay == 2 * 24 * 3600
    admin.begin_admin_transfer(successor.address)
    _, pending, accept_after, _ = admin.admin_state()
    assert pending == successor.address and accept_after > 0
    # The successor cannot take over before the delay, nor anyone else at any time.
    with pytest.raises(TransactionReverted, match=r"AccessControlEnforcedDefaultAdminDelay\("):
        successor.accept_admin_transfer()
    with pytest.raises(TransactionReverted, match=r"AccessControlInvalidDefaultAdmin\("):
        parties.notary.accept_admin_transfer()
    anvil.rpc("evm_increaseTime", [delay + 1])
    anvil.rpc("evm_mine", [])
    try:
        successor.accept_admin_transfer()
        assert successor.admin_state()[0] == successor.address
        assert successor.has_role(Role.ADMIN, successor.address)
        assert not successor.has_role(Role.ADMIN, admin.address)
        _assert_refused(admin, lambda c: c.grant_role(Role.NOTARY, c.address), Role.ADMIN)
    finally:
        # Hand the role back for the other tests of this module.
        successor.begin_admin_transfer(admin.address)
        anvil.rpc("evm_increaseTime", [delay + 1])
        anvil.rpc("evm_mine", [])
        admin.accept_admin_transfer()
    assert admin.admin_state()[0] == admin.address


def test_constructors_refuse_a_zero_registry_or_notary(parties: Parties) -> None:
    admin = parties.admin
    w3 = admin.w3
    artifact = load_artifact("TelemetryNotary")
    factory = w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
    zero = "0x" + "00" * 20
    for args, error in (
        ((3600, admin.address, admin.address, zero), "InvalidRegistry"),
        ((3600, admin.address, admin.address, admin.address), "InvalidRegistry"),  # no code
        ((3600, admin.address, zero, admin.registry_address), "InvalidAccount"),
        ((3600, zero, admin.address, admin.registry_address), "AccessControlInvalidDefaultAdmin"),
    ):
        data = bytes(HexBytes(factory.constructor(*args).data_in_transaction))
        with pytest.raises(TransactionReverted, match=error):
            admin._tx.transact("deploy TelemetryNotary", None, data)
