"""A task's log file read from an offset, in pieces of whole characters: what the API,
the console and ``task logs --follow`` stream."""

from __future__ import annotations

import codecs
from collections.abc import Iterator
from pathlib import Path

#: The most log bytes one read returns when following a log: a task that printed a
#: gigabyte is streamed in pieces, never read whole.
LOG_CHUNK = 1 << 20


def read_log(path: Path, offset: int, limit: int | None = None) -> tuple[str, int]:
    """``path``'s text from byte ``offset`` (about ``limit`` bytes: ending before a
    character the limit cuts in two, and at least one character) and the offset to
    continue from; nothing yet, or no file: ``("", offset)``."""
    if not path.is_file() or offset >= path.stat().st_size:
        return "", offset
    limit = None if limit is None else max(4, limit)  # a UTF-8 character is 1 to 4 bytes
    with open(path, "rb") as fh:
        fh.seek(offset)
        data = fh.read(-1 if limit is None else limit)
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    text = decoder.decode(data, final=limit is None or len(data) < limit)
    held = len(decoder.getstate()[0])  # the start of a character the limit cut in two
    return text, offset + len(data) - held


def log_pieces(path: Path, offset: int, end: int) -> Iterator[str]:
    """``path``'s text from byte ``offset`` to byte ``end``, in pieces of at most
    :data:`LOG_CHUNK` bytes (a character split between two stays whole): a long log sent
    whole without being held whole."""
    if offset >= end:
        return
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    with open(path, "rb") as fh:
        fh.seek(offset)
        left = end - offset
        while left > 0:
            data = fh.read(min(LOG_CHUNK, left))
            left = left - len(data) if data else 0
            text = decoder.decode(data, final=left == 0)
            if text:
                yield text
