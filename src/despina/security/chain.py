"""The activity log's hash chain: each entry's hash covers its fields and the hash of the
entry before it, so editing or deleting any entry breaks every hash after it."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

GENESIS = "0" * 64
FIELDS = ("seq", "at", "actor", "action", "target", "outcome")


def entry_hash(prev_hash: str, entry: Mapping[str, Any]) -> str:
    body = json.dumps({k: entry[k] for k in FIELDS}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(prev_hash.encode() + b"\n" + body.encode()).hexdigest()


@dataclass(frozen=True)
class ChainReport:
    """The outcome of :func:`verify_chain`: ``ok``, how many entries, and the first break."""

    ok: bool
    entries: int
    head: str
    broken_at: int | None = None
    reason: str | None = None


def verify_chain(entries: Iterable[Mapping[str, Any]]) -> ChainReport:
    """Walk entries in ``seq`` order: sequence numbers without gaps from 1, each entry's
    ``prev_hash`` equal to the hash before it, and each hash recomputed from the fields."""
    prev, n = GENESIS, 0
    for e in entries:
        n += 1
        if e["seq"] != n:
            return ChainReport(False, n - 1, prev, n, f"entry {n} is missing (next is {e['seq']})")
        if e["prev_hash"] != prev:
            return ChainReport(False, n - 1, prev, n, f"entry {n} does not follow entry {n - 1}")
        if e["hash"] != entry_hash(prev, e):
            return ChainReport(False, n - 1, prev, n, f"entry {n} was edited after it was written")
        prev = e["hash"]
    return ChainReport(True, n, prev)
