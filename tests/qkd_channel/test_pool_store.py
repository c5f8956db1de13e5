"""The authentication pool on disk: a restart resumes the link and never reuses a key."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import struct
import threading
from pathlib import Path

import pytest

from qkd_channel.errors import ChannelError
from qkd_channel.postprocessing.authentication import AuthenticatedChannel, Role
from qkd_channel.postprocessing.channel import InMemoryChannel
from qkd_channel.postprocessing.pool_store import PoolStore, RetiredAuthenticationKey
from tests.qkd_channel.test_postprocessing_authentication import Tap, _checkpoint_both

PSK = os.urandom(512)  # 8 checkpoints per direction


def _key_index(frame: bytes) -> int:
    """The key index a checkpoint frame names (0x01 | index u64 | count u64 | tag)."""
    assert frame[:1] == b"\x01"
    return int(struct.unpack_from(">Q", frame, 1)[0])


class Link:
    """Both ends of one session, each with its pool opened from its own state file; a tap
    in between collects every checkpoint Alice sends, as an eavesdropper would."""

    def __init__(self, tmp_path: Path, psk: bytes = PSK) -> None:
        self.tap = Tap()
        self.alice = AuthenticatedChannel(
            self.tap.alice_raw, PoolStore(tmp_path / "a.state").open_pool(psk), Role.ALICE
        )
        self.bob = AuthenticatedChannel(
            self.tap.bob_raw, PoolStore(tmp_path / "b.state").open_pool(psk), Role.BOB
        )

    def checkpoint(self, seen: list[int]) -> tuple[BaseException | None, BaseException | None]:
        """One checkpoint; Alice's frame is forwarded (and its key index noted), Bob's relayed."""

        def relay() -> None:
            try:
                seen.append(_key_index(self.tap.forward()))
                self.tap.relay_to_alice()
            except ChannelError:
                pass

        relay_thread = threading.Thread(target=relay)
        relay_thread.start()
        outcome = _checkpoint_both(self.alice, self.bob)
        relay_thread.join(timeout=5)
        return outcome


def test_restart_with_the_same_key_resumes_the_link_and_never_reuses_a_key(
    tmp_path: Path,
) -> None:
    seen: list[int] = []
    first = Link(tmp_path)
    for _ in range(3):
        assert first.checkpoint(seen) == (None, None)
    # Both KMEs restart with the same pre-shared key file.
    second = Link(tmp_path)
    for _ in range(3):
        assert second.checkpoint(seen) == (None, None)
    assert seen == [0, 1, 2, 3, 4, 5], "every tag the eavesdropper saw has its own key"


def test_a_key_is_retired_on_disk_before_its_tag_leaves(tmp_path: Path) -> None:
    state = tmp_path / "a.state"
    on_disk: list[int] = []

    class Recording(InMemoryChannel):
        """Alice's raw channel: reads her state file as each checkpoint frame leaves."""

        def send(self, message: bytes) -> None:
            if self is near and message[:1] == b"\x01":
                document = json.loads(state.read_text())
                on_disk.append(document["pool"]["streams"][0]["next_index"])
            super().send(message)

    near, far = Recording.pair()
    alice = AuthenticatedChannel(near, PoolStore(state).open_pool(PSK), Role.ALICE)
    bob = AuthenticatedChannel(far, PoolStore(tmp_path / "b.state").open_pool(PSK), Role.BOB)
    for _ in range(2):
        assert _checkpoint_both(alice, bob) == (None, None)
    # When tag i (keyed by key i) was sent, the file already said "next key: i + 1".
    assert on_disk == [1, 2]


def test_a_crash_in_the_middle_of_a_checkpoint_is_absorbed_after_restart(
    tmp_path: Path,
) -> None:
    seen: list[int] = []
    link = Link(tmp_path)
    assert link.checkpoint(seen) == (None, None)
    # Alice retires key 1 and sends its checkpoint; the connection dies before Bob sees it.
    link.tap.cut()
    errors = _checkpoint_both(link.alice, link.bob)
    assert all(isinstance(e, ChannelError) for e in errors)
    again = Link(tmp_path)
    assert again.checkpoint(seen) == (None, None)
    assert seen == [0, 2], "the burned key 1 is skipped, never reused"


def test_pools_that_no_longer_match_fail_authentication(tmp_path: Path) -> None:
    Link(tmp_path)  # both state files now exist
    state = tmp_path / "b.state"
    document = json.loads(state.read_text())
    stream = document["pool"]["streams"][0]
    stream["buffer"] = os.urandom(len(stream["buffer"]) // 2).hex()
    state.write_text(json.dumps(document))
    _, bob_error = Link(tmp_path).checkpoint([])
    assert isinstance(bob_error, ChannelError), "Bob's pool no longer matches Alice's tag"


def test_a_replaced_key_can_never_come_back(tmp_path: Path) -> None:
    store = PoolStore(tmp_path / "a.state")
    store.open_pool(PSK)
    fresh = os.urandom(512)
    pool = store.open_pool(fresh)
    assert pool.checkpoints_left(Role.ALICE) == 8
    with pytest.raises(RetiredAuthenticationKey, match="fresh one"):
        store.open_pool(PSK)
    assert store.open_pool(fresh).checkpoints_left(Role.ALICE) == 8


def test_the_state_file_is_private_and_a_damaged_one_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "kme" / "link-auth.state"
    PoolStore(path).open_pool(PSK)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    mine = hashlib.sha256(PSK).hexdigest()
    damages = (
        "not json",
        '{"format": 99}',
        '{"format": 1, "fingerprint": 3, "retired": [], "pool": {}}',
        json.dumps({"format": 1, "fingerprint": mine, "retired": [], "pool": {"streams": 1}}),
    )
    for damage in damages:
        path.write_text(damage)
        with pytest.raises(ChannelError, match="authentication pool state"):
            PoolStore(path).open_pool(PSK)
