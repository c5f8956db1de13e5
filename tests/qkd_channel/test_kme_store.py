"""The key buffer: block halves, allocation sync between ends, one-time delivery, persistence."""

from __future__ import annotations

import secrets
import stat
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qkd_channel.errors import KeyStoreError
from qkd_channel.kme.config import LinkEnd
from qkd_channel.kme.store import DATABASE_NAME, KeyAllocation, KeyStore, Segment


def _pair(tmp_path: Path) -> tuple[KeyStore, KeyStore]:
    return (
        KeyStore(tmp_path / "a", kme_id="kme-a", end=LinkEnd.A),
        KeyStore(tmp_path / "b", kme_id="kme-b", end=LinkEnd.B),
    )


def _feed(stores: tuple[KeyStore, ...], block_id: str, material: bytes) -> None:
    for store in stores:
        store.add_block(block_id, material)


def test_each_end_carves_only_its_half_and_the_peer_gets_the_same_bits(tmp_path: Path) -> None:
    a, b = _pair(tmp_path)
    material = secrets.token_bytes(200)
    _feed((a, b), "blk-1", material)
    assert a.available_bits(LinkEnd.A) == a.available_bits(LinkEnd.B) == 800

    from_a = a.reserve("dev", ["notary"], [256, 256])
    b.apply_peer_allocations(from_a.allocations)
    from_b = b.reserve("notary", ["dev"], [256])
    a.apply_peer_allocations(from_b.allocations)

    assert [k.material for k in from_a.keys] == [material[0:32], material[32:64]]
    assert from_b.keys[0].material == material[100:132]
    ids = [k.key_id for k in from_a.keys]
    assert b.take_keys("notary", "dev", ids) == list(from_a.keys)
    assert a.take_keys("dev", "notary", [from_b.keys[0].key_id]) == list(from_b.keys)
    # Both ends agree on what is left of each half.
    for end in LinkEnd:
        assert a.available_bits(end) == b.available_bits(end)


def test_a_key_may_span_blocks(tmp_path: Path) -> None:
    a, b = _pair(tmp_path)
    first, second = secrets.token_bytes(20), secrets.token_bytes(20)
    _feed((a, b), "blk-1", first)
    _feed((a, b), "blk-2", second)
    reservation = a.reserve("dev", ["notary"], [128])
    assert reservation.keys[0].material == first[:10] + second[:6]
    b.apply_peer_allocations(reservation.allocations)
    assert b.take_keys("notary", "dev", [reservation.keys[0].key_id]) == list(reservation.keys)


def test_reserve_refuses_more_than_the_own_half_and_carves_nothing(tmp_path: Path) -> None:
    a, _ = _pair(tmp_path)
    a.add_block("blk-1", secrets.token_bytes(64))  # 256 bits per half
    with pytest.raises(KeyStoreError) as info:
        a.reserve("dev", ["notary"], [256, 8])
    assert info.value.reason == "insufficient"
    assert a.available_bits(LinkEnd.A) == 256


def test_replayed_block_id_is_refused_even_after_it_was_used_up(tmp_path: Path) -> None:
    a, _ = _pair(tmp_path)
    material = secrets.token_bytes(8)
    a.add_block("blk-1", material)
    a.reserve("dev", ["notary"], [32])
    with pytest.raises(KeyStoreError) as info:
        a.add_block("blk-1", material)
    assert info.value.reason == "duplicate_block"
    assert a.available_bits(LinkEnd.A) == 0


def test_release_puts_back_exactly_the_reserved_bits(tmp_path: Path) -> None:
    a, _ = _pair(tmp_path)
    material = secrets.token_bytes(100)
    a.add_block("blk-1", material)
    first = a.reserve("dev", ["notary"], [160])
    a.release(first)
    again = a.reserve("dev", ["notary"], [400])
    assert again.keys[0].material == material[:50]


def test_peer_refuses_bits_already_used_and_records_nothing(tmp_path: Path) -> None:
    a, b = _pair(tmp_path)
    _feed((a, b), "blk-1", secrets.token_bytes(64))
    reservation = a.reserve("dev", ["notary"], [64])
    b.apply_peer_allocations(reservation.allocations)
    with pytest.raises(KeyStoreError) as info:
        b.apply_peer_allocations(reservation.allocations)  # replay of the same allocation
    assert info.value.reason in {"conflict", "duplicate_key"}
    assert len(b.held_key_ids()) == 1


def test_peer_refuses_segments_in_its_own_half(tmp_path: Path) -> None:
    a, b = _pair(tmp_path)
    _feed((a, b), "blk-1", secrets.token_bytes(64))
    # B claims bytes 0..8, which lie in A's half: only A may carve those.
    rogue = KeyAllocation(str(uuid.uuid4()), "dev", ("notary",), (Segment("blk-1", 0, 8),))
    with pytest.raises(KeyStoreError) as info:
        a.apply_peer_allocations([rogue])
    assert info.value.reason == "conflict"
    assert a.held_key_ids() == []
    assert a.available_bits(LinkEnd.A) == 256


def test_peer_reports_unknown_block_without_recording(tmp_path: Path) -> None:
    a, b = _pair(tmp_path)
    a.add_block("blk-late", secrets.token_bytes(64))
    with pytest.raises(KeyStoreError) as info:
        b.apply_peer_allocations(a.reserve("dev", ["notary"], [64]).allocations)
    assert info.value.reason == "unknown_block"
    assert b.held_key_ids() == []


def test_a_block_the_peer_lost_is_dropped_once_the_peer_has_a_later_one(tmp_path: Path) -> None:
    a, b = _pair(tmp_path)
    a.add_block("blk-lost", secrets.token_bytes(64))  # B stopped before storing it
    later = secrets.token_bytes(64)
    _feed((a, b), "blk-later", later)
    reservation = a.reserve("dev", ["notary"], [64])
    with pytest.raises(KeyStoreError) as info:
        b.apply_peer_allocations(reservation.allocations)
    assert info.value.details == {"block_id": "blk-lost", "newest_block": "blk-later"}
    a.release(reservation)
    assert a.drop_block_lost_by_peer("blk-lost", "blk-later") == 512  # both halves
    retry = a.reserve("dev", ["notary"], [64])
    b.apply_peer_allocations(retry.allocations)
    assert retry.keys[0].material == later[:8]


def test_a_block_still_on_its_way_is_kept(tmp_path: Path) -> None:
    a, b = _pair(tmp_path)
    _feed((a, b), "blk-1", secrets.token_bytes(64))
    a.reserve("dev", ["notary"], [256])  # A's half of blk-1 used up
    a.add_block("blk-2", secrets.token_bytes(64))  # not at B yet
    with pytest.raises(KeyStoreError) as info:
        b.apply_peer_allocations(a.reserve("dev", ["notary"], [64]).allocations)
    assert info.value.details["newest_block"] == "blk-1"
    assert a.drop_block_lost_by_peer("blk-2", "blk-1") == 0
    assert a.drop_block_lost_by_peer("blk-2", "blk-unknown") == 0
    # blk-1's B half, and blk-2 whole but for the 64 bits the refused reservation carved.
    assert a.available_bits() == 256 + 192 + 256


def test_bits_burned_by_the_owner_are_dropped_by_the_peer(tmp_path: Path) -> None:
    a, b = _pair(tmp_path)
    material = secrets.token_bytes(64)
    _feed((a, b), "blk-1", material)
    a.reserve("dev", ["notary"], [64])  # never confirmed: burned at the owner
    second = a.reserve("dev", ["notary"], [64])
    b.apply_peer_allocations(second.allocations)
    assert b.available_bits(LinkEnd.A) == a.available_bits(LinkEnd.A) == 256 - 128
    assert b.take_keys("notary", "dev", [second.keys[0].key_id])[0].material == material[8:16]


def test_take_keys_is_once_only_and_refusals_consume_nothing(tmp_path: Path) -> None:
    a, b = _pair(tmp_path)
    _feed((a, b), "blk-1", secrets.token_bytes(64))
    reservation = a.reserve("dev", ["notary"], [64])
    b.apply_peer_allocations(reservation.allocations)
    key_id = reservation.keys[0].key_id
    for caller, master, reason in [
        ("intruder", "dev", "not_entitled"),
        ("notary", "someone-else", "not_entitled"),
        ("notary", "dev", None),
        ("notary", "dev", "unknown_key"),
    ]:
        if reason is None:
            assert b.take_keys(caller, master, [key_id]) == list(reservation.keys)
            continue
        with pytest.raises(KeyStoreError) as info:
            b.take_keys(caller, master, [key_id])
        assert info.value.reason == reason


def test_a_key_with_two_slaves_goes_to_each_once(tmp_path: Path) -> None:
    a, b = _pair(tmp_path)
    _feed((a, b), "blk-1", secrets.token_bytes(64))
    reservation = a.reserve("dev", ["notary", "auditor"], [64])
    b.apply_peer_allocations(reservation.allocations)
    key_id = reservation.keys[0].key_id
    assert b.take_keys("notary", "dev", [key_id]) == list(reservation.keys)
    assert b.take_keys("auditor", "dev", [key_id]) == list(reservation.keys)
    assert b.held_key_ids() == []


def test_buffer_survives_reopening_and_is_private(tmp_path: Path) -> None:
    a, b = _pair(tmp_path)
    _feed((a, b), "blk-1", secrets.token_bytes(64))
    reservation = a.reserve("dev", ["notary"], [64])
    b.apply_peer_allocations(reservation.allocations)
    files = sorted((tmp_path / "b").iterdir())
    assert {f.name for f in files} >= {DATABASE_NAME, DATABASE_NAME + "-wal"}
    for path in files:  # the database and its WAL/shared-memory files
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name
    assert stat.S_IMODE((tmp_path / "b").stat().st_mode) == 0o700
    a.close()
    b.close()
    with KeyStore(tmp_path / "b", kme_id="kme-b", end=LinkEnd.B) as reopened:
        assert reopened.take_keys("notary", "dev", [reservation.keys[0].key_id]) == list(
            reservation.keys
        )
    with KeyStore(tmp_path / "a", kme_id="kme-a", end=LinkEnd.A) as reopened:
        assert reopened.available_bits(LinkEnd.A) == 256 - 64


@pytest.mark.parametrize(
    ("kme_id", "end"),
    [
        pytest.param("kme-a", LinkEnd.B, id="other-end"),
        pytest.param("kme-x", LinkEnd.A, id="other-kme"),
    ],
)
def test_buffer_refuses_to_open_for_another_identity(
    tmp_path: Path, kme_id: str, end: LinkEnd
) -> None:
    KeyStore(tmp_path / "a", kme_id="kme-a", end=LinkEnd.A).close()
    with pytest.raises(KeyStoreError) as info:
        KeyStore(tmp_path / "a", kme_id=kme_id, end=end)
    assert info.value.reason == "identity_mismatch"


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    blocks=st.lists(st.integers(min_value=2, max_value=90), min_size=1, max_size=5),
    requests=st.lists(
        st.tuples(
            st.sampled_from(list(LinkEnd)),
            st.lists(st.integers(min_value=1, max_value=24), min_size=1, max_size=3),
            st.booleans(),
        ),
        max_size=12,
    ),
)
def test_no_bit_is_ever_handed_out_twice_and_both_ends_agree(
    tmp_path_factory: pytest.TempPathFactory,
    blocks: list[int],
    requests: list[tuple[LinkEnd, list[int], bool]],
) -> None:
    """Any interleaving of allocations from both ends, confirmed or burned: the keys match
    at both ends and together never use a byte of any block twice."""
    root = tmp_path_factory.mktemp("prop")
    stores = dict(zip(LinkEnd, _pair(root), strict=True))
    for index, length in enumerate(blocks):
        material = secrets.token_bytes(length)
        _feed(tuple(stores.values()), f"blk-{index}", material)
    used: set[tuple[str, int]] = set()
    for end, sizes_bytes, confirmed in requests:
        owner, peer = stores[end], stores[end.other]
        try:
            reservation = owner.reserve("m", ["s"], [8 * n for n in sizes_bytes])
        except KeyStoreError as exc:
            assert exc.reason == "insufficient"
            continue
        for allocation in reservation.allocations:
            for segment in allocation.segments:
                for position in range(segment.offset, segment.offset + segment.length):
                    assert (segment.block_id, position) not in used
                    used.add((segment.block_id, position))
        if not confirmed:
            continue  # burned: the outcome was unknown to the owner
        peer.apply_peer_allocations(reservation.allocations)
        delivered = peer.take_keys("s", "m", [k.key_id for k in reservation.keys])
        assert delivered == list(reservation.keys)
    for store in stores.values():
        store.close()
