"""The peers file of ``despina serve --workers N``: each process marks its own byte."""

from __future__ import annotations

from pathlib import Path

import pytest

from despina.serving.peers import PeerSlots, create_peers_file
from despina.serving.settings import PEER_SLOT, PEERS_FILE


def test_each_process_sees_the_others_busy_but_not_itself(tmp_path: Path) -> None:
    path = tmp_path / "peers"
    create_peers_file(path, 3)
    a, b, c = (PeerSlots(path, i) for i in range(3))
    assert not any(s.others_busy() for s in (a, b, c))
    a.mark(True)
    assert not a.others_busy() and b.others_busy() and c.others_busy()
    c.mark(True)
    a.mark(False)
    assert a.others_busy() and b.others_busy() and not c.others_busy()
    c.mark(False)
    assert not b.others_busy()


def test_a_restarted_process_starts_idle(tmp_path: Path) -> None:
    path = tmp_path / "peers"
    create_peers_file(path, 2)
    PeerSlots(path, 0).mark(True)  # a process that died while busy
    watcher = PeerSlots(path, 1)
    assert watcher.others_busy()
    PeerSlots(path, 0)  # its replacement
    assert not watcher.others_busy()


def test_slots_come_from_the_environment_and_are_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "peers"
    create_peers_file(path, 2)
    monkeypatch.delenv(PEERS_FILE, raising=False)
    assert PeerSlots.from_env() is None  # one process: no peers
    monkeypatch.setenv(PEERS_FILE, str(path))
    monkeypatch.setenv(PEER_SLOT, "1")
    slots = PeerSlots.from_env()
    assert slots is not None and slots.slot == 1
    with pytest.raises(ValueError, match="outside the peers file"):
        PeerSlots(path, 2)
