"""A task's log read in pieces: each piece whole characters, the pieces the whole log."""

from __future__ import annotations

from pathlib import Path

import pytest

from despina.control.logs import read_log


@pytest.mark.parametrize("limit", [1, 4, 5, 7, 64])
def test_pieces_rebuild_the_log_without_splitting_a_character(tmp_path: Path, limit: int) -> None:
    log = tmp_path / "task.log"
    text = "step 1 ok\nnaïve €5 😀 done\n" * 40
    log.write_bytes(text.encode())
    pieces, offset = [], 0
    while True:
        piece, offset = read_log(log, offset, limit)
        if not piece:
            break
        pieces.append(piece)
    assert "".join(pieces) == text and offset == len(text.encode())
    assert all("\ufffd" not in p for p in pieces)  # no character cut in two
    assert max(len(p.encode()) for p in pieces) <= max(4, limit)


def test_past_the_end_or_no_file_is_nothing_yet(tmp_path: Path) -> None:
    log = tmp_path / "task.log"
    log.write_text("abc")
    assert read_log(log, 0) == ("abc", 3)
    assert read_log(log, 3, 10) == ("", 3) and read_log(log, 99) == ("", 99)
    assert read_log(tmp_path / "none.log", 5, 10) == ("", 5)


def test_the_log_to_a_byte_comes_in_bounded_pieces_of_whole_characters(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import despina.control.logs as logs

    monkeypatch.setattr(logs, "LOG_CHUNK", 7)  # pieces of 7 bytes: characters fall across
    log = tmp_path / "task.log"
    text = "naïve €5 😀 done\n" * 30
    log.write_bytes(text.encode() + b"written later")
    end = len(text.encode())
    pieces = list(logs.log_pieces(log, 0, end))
    assert "".join(pieces) == text  # up to the byte asked, not what came after
    assert len(pieces) > 30 and "\ufffd" not in "".join(pieces)
    assert list(logs.log_pieces(log, end, end)) == []
