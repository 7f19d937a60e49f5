"""Whether the other processes of ``despina serve --workers N`` are serving right now.

A model call with nothing else in flight may use every core, with spinning threads: that
halves a lone request's model time. In one process "nothing else" is easy to know; with
several, a call alone in its process may share the cores with the other processes' calls,
and a spinning thread would take theirs. So each process marks one byte of a small
shared file while it has requests in flight, and a lone call takes every core only when
no other byte is set. Plain bytes in a memory-mapped file: each process writes only its
own, and a stale read costs one call its thread count, never a wrong answer.
"""

from __future__ import annotations

import mmap
from pathlib import Path

from despina.serving.settings import peer_slot_from_env


def create_peers_file(path: Path, processes: int) -> None:
    """A zeroed file with one byte per server process."""
    path.write_bytes(bytes(processes))


class PeerSlots:
    """This process's byte of a peers file, and a look at the others'."""

    def __init__(self, path: str | Path, slot: int) -> None:
        with open(path, "r+b") as fh:
            self._map = mmap.mmap(fh.fileno(), 0)
        if not 0 <= slot < len(self._map):
            raise ValueError(f"slot {slot} is outside the peers file ({len(self._map)} slots)")
        self.slot = slot
        self._others = [i for i in range(len(self._map)) if i != slot]
        self.mark(False)  # a restarted process starts idle

    @classmethod
    def from_env(cls) -> PeerSlots | None:
        """The slots ``run_workers`` handed this process; None when it runs alone."""
        given = peer_slot_from_env()
        return None if given is None else cls(*given)

    def mark(self, busy: bool) -> None:
        self._map[self.slot] = 1 if busy else 0

    def others_busy(self) -> bool:
        m = self._map
        return any(m[i] for i in self._others)
