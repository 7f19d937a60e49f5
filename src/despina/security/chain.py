"""The activity log's hash chain: each entry's MAC covers its fields and the MAC of the
entry before it, so editing or deleting any entry breaks every MAC after it.

The MAC is HMAC-SHA256 under a key that is not in the database (``activity.key`` in
Despina's home, or ``DESPINA_ACTIVITY_KEY``): whoever can write the database can still
delete entries but cannot recompute a chain that verifies. Deleting the newest entries
leaves a shorter chain that does verify; an operator who keeps a head they saw earlier
(``despina events verify`` prints it) detects that with ``--expect HEAD``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from despina.core.errors import ConfigError
from despina.security.envelope import check_private, write_private
from despina.security.settings import activity_key_from_env

GENESIS = "0" * 64
FIELDS = ("seq", "at", "actor", "action", "target", "outcome")


def entry_hash(prev_hash: str, entry: Mapping[str, Any], key: bytes) -> str:
    body = json.dumps({k: entry[k] for k in FIELDS}, sort_keys=True, separators=(",", ":"))
    return hmac.new(key, prev_hash.encode() + b"\n" + body.encode(), hashlib.sha256).hexdigest()


def load_activity_key(path: Path) -> bytes:
    """``DESPINA_ACTIVITY_KEY`` (base64 of 32 bytes), else the key file at ``path``,
    created (mode 0600) on first use."""
    given = activity_key_from_env()
    if given:
        try:
            key = base64.b64decode(given, validate=True)
        except ValueError:
            key = b""
        if len(key) != 32:
            raise ConfigError(
                "DESPINA_ACTIVITY_KEY must be base64 of 32 bytes; make one with: "
                "python -c 'import base64,os;print(base64.b64encode(os.urandom(32)).decode())'"
            )
        return key
    if not path.exists():
        write_private(path, base64.b64encode(secrets.token_bytes(32)).decode())
    check_private(path)
    return base64.b64decode(path.read_text().strip())


@dataclass(frozen=True)
class ChainReport:
    """The outcome of :func:`verify_chain`: ``ok``, how many entries, the head, the first
    break; and with an expected head, the entry that has it (None: not found)."""

    ok: bool
    entries: int
    head: str
    broken_at: int | None = None
    reason: str | None = None
    expected_at: int | None = None


def verify_chain(
    entries: Iterable[Mapping[str, Any]], key: bytes, expect: str | None = None
) -> ChainReport:
    """Walk entries in ``seq`` order: sequence numbers without gaps from 1, each entry's
    ``prev_hash`` equal to the MAC before it, and each MAC recomputed from the fields.
    ``expect``: a head seen earlier, which must be some entry's MAC (else the log was cut
    back or rewritten since)."""
    prev, n, found = GENESIS, 0, None
    for e in entries:
        n += 1
        if e["seq"] != n:
            return ChainReport(False, n - 1, prev, n, f"entry {n} is missing (next is {e['seq']})")
        if e["prev_hash"] != prev:
            return ChainReport(False, n - 1, prev, n, f"entry {n} does not follow entry {n - 1}")
        if not hmac.compare_digest(e["hash"], entry_hash(prev, e, key)):
            return ChainReport(
                False, n - 1, prev, n, f"entry {n} was edited or forged after it was written"
            )
        prev = e["hash"]
        if expect is not None and found is None and hmac.compare_digest(prev, expect):
            found = n
    if expect is not None and found is None:
        return ChainReport(
            False,
            n,
            prev,
            None,
            f"the expected head {expect[:16]}… is not in the log: entries written after it "
            "was taken were deleted, or the log was replaced",
        )
    return ChainReport(True, n, prev, expected_at=found)
