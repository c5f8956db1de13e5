"""The notary's attestation rules (notary.attestation) and the DeviceRegistry contract
agree on trust after any sequence of reports and approvals (property-based, executed on
the embedded chain)."""

from __future__ import annotations

import uuid

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from notary.attestation import approve, attest
from notary.chain.client import ChainClient

DIGESTS = ["1" * 64, "2" * 64, "3" * 64]

_steps = st.lists(
    st.tuples(st.sampled_from(["report", "approve"]), st.sampled_from(DIGESTS)),
    min_size=1,
    max_size=6,
)


@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
@given(expected=st.none() | st.sampled_from(DIGESTS), steps=_steps)
def test_off_chain_rules_match_the_registry(
    chain_client: ChainClient, expected: str | None, steps: list[tuple[str, str]]
) -> None:
    device_id = f"prop-{uuid.uuid4().hex[:12]}"
    chain_client.register_device(
        device_id,
        sae_id="sae",
        owner=chain_client.address,
        expected_firmware=None if expected is None else bytes.fromhex(expected),
    )
    approved, current, trusted = expected, None, False
    for sequence, (action, digest) in enumerate(steps, start=1):
        if action == "report":
            result = attest(
                approved_digest=approved, current_digest=current, trusted=trusted, reported=digest
            )
            approved, current, trusted = (
                result.approved_digest,
                result.current_digest,
                result.trusted,
            )
            outcome = chain_client.attest_firmware(device_id, bytes.fromhex(digest), sequence)
            assert outcome.trusted == trusted
        else:
            trusted = approve(current_digest=current, digest=digest)
            approved = digest
            chain_client.approve_firmware(device_id, bytes.fromhex(digest))
        info = chain_client.get_device(device_id)
        assert info is not None
        on_chain_approved = None if info.approved_firmware is None else info.approved_firmware.hex()
        assert on_chain_approved == approved
        assert info.trusted == trusted
