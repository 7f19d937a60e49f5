"""Envelope encryption: round trips, tampering and truncation fail loudly, rotation
re-wraps data keys without touching the ciphertext, key files are private."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest

from despina.core.errors import ConfigError, IntegrityError
from despina.security.envelope import (
    MAGIC,
    Keyring,
    file_context,
    is_sealed,
    read_artifact,
    rewrap,
    rotate,
    seal,
    sealed_files,
    unseal,
    write_sealed,
)

PAYLOAD = os.urandom(5000) + b"a model, a report, a Parquet shard"


def _body(blob: bytes) -> bytes:
    """The ciphertext part of a sealed blob (after magic, length and header)."""
    n = int.from_bytes(blob[len(MAGIC) : len(MAGIC) + 4], "big")
    return blob[len(MAGIC) + 4 + n :]


def test_seal_round_trips_and_hides_the_payload() -> None:
    ring = Keyring.generate()
    blob = seal(PAYLOAD, ring)
    assert is_sealed(blob) and PAYLOAD[:64] not in blob
    assert unseal(blob, ring) == PAYLOAD
    # A fresh data key and nonce each time: the same payload never seals the same way.
    assert _body(seal(PAYLOAD, ring)) != _body(blob)


@pytest.mark.parametrize("where", [0.0, 0.5, 1.0])
def test_a_flipped_bit_anywhere_in_the_ciphertext_is_detected(where: float) -> None:
    ring = Keyring.generate()
    blob = bytearray(seal(PAYLOAD, ring))
    body_start = len(blob) - len(_body(bytes(blob)))
    i = body_start + int(where * (len(blob) - body_start - 1))
    blob[i] ^= 0x01
    with pytest.raises(IntegrityError, match="tampered with, truncated"):
        unseal(bytes(blob), ring)


@pytest.mark.parametrize("keep", [3, len(MAGIC) + 2, 40, -1, -16, -17])
def test_a_truncated_artifact_is_detected(keep: int) -> None:
    ring = Keyring.generate()
    blob = seal(PAYLOAD, ring)
    with pytest.raises(IntegrityError):
        unseal(blob[:keep], ring)


def test_a_tampered_header_or_another_key_is_detected() -> None:
    ring = Keyring.generate()
    blob = seal(PAYLOAD, ring)
    forged = blob.replace(b'"wrapped": "', b'"wrapped": "AAAA', 1)
    with pytest.raises(IntegrityError):
        unseal(forged, ring)
    with pytest.raises(IntegrityError, match="not in the keyring"):
        unseal(blob, Keyring.generate())


def test_rewrap_changes_the_wrapping_not_the_ciphertext() -> None:
    old = Keyring.generate()
    blob = seal(PAYLOAD, old)
    new = old.with_new_key()
    moved = rewrap(blob, new)
    assert _body(moved) == _body(blob)  # payload never re-encrypted
    assert unseal(moved, new.without_previous()) == PAYLOAD  # the old key is no longer needed
    with pytest.raises(IntegrityError):
        unseal(moved, old)


def test_rotation_of_a_key_file_rewraps_every_sealed_file(tmp_path: Path) -> None:
    ring = Keyring.load(tmp_path / "master.key")
    assert stat.S_IMODE((tmp_path / "master.key").stat().st_mode) == 0o600
    files = [tmp_path / "outputs" / f"part-{i}.parquet" for i in range(3)]
    for f in files:
        write_sealed(f, PAYLOAD, ring)
    (tmp_path / "outputs" / "plain.txt").write_text("not sealed")
    bodies = [_body(f.read_bytes()) for f in files]
    new, count = rotate(ring, tmp_path)
    assert count == 3 and new.kid != ring.kid and not new.previous
    assert Keyring.load(tmp_path / "master.key").kid == new.kid  # the file holds the new key
    assert [_body(f.read_bytes()) for f in files] == bodies
    assert all(unseal(f.read_bytes(), new) == PAYLOAD for f in files)
    assert sealed_files(tmp_path) == sorted(files)
    # Each rotation makes a new key and re-wraps everything under it.
    again, count = rotate(new, tmp_path)
    assert count == 3 and again.kid != new.kid


def test_an_environment_key_rotates_with_the_previous_one_beside_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old, new = os.urandom(32), os.urandom(32)
    monkeypatch.setenv("DESPINA_MASTER_KEY", base64.b64encode(old).decode())
    ring = Keyring.load(tmp_path / "unused.key")
    write_sealed(tmp_path / "a.bin", PAYLOAD, ring)
    monkeypatch.setenv("DESPINA_MASTER_KEY", base64.b64encode(new).decode())
    monkeypatch.setenv("DESPINA_PREVIOUS_MASTER_KEYS", base64.b64encode(old).decode())
    ring2 = Keyring.load(tmp_path / "unused.key")
    _, count = rotate(ring2, tmp_path)
    assert count == 1 and not (tmp_path / "unused.key").exists()
    monkeypatch.delenv("DESPINA_PREVIOUS_MASTER_KEYS")
    assert unseal((tmp_path / "a.bin").read_bytes(), Keyring.load(tmp_path / "x")) == PAYLOAD
    monkeypatch.setenv("DESPINA_MASTER_KEY", "too-short")
    with pytest.raises(ConfigError, match="32 random bytes"):
        Keyring.load(tmp_path / "x")


def test_a_key_file_others_can_read_is_refused(tmp_path: Path) -> None:
    Keyring.load(tmp_path / "master.key")
    (tmp_path / "master.key").chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        Keyring.load(tmp_path / "master.key")


def test_read_artifact_decrypts_with_the_homes_key_and_reads_plain_files_as_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DESPINA_MASTER_KEY", raising=False)
    monkeypatch.setenv("DESPINA_HOME", str(tmp_path))
    ring = Keyring.load(tmp_path / "master.key")
    write_sealed(tmp_path / "m.json", b'{"a": 1}', ring)
    write_sealed(tmp_path / "p.json", b'{"b": 2}', None)
    assert read_artifact(tmp_path / "m.json") == b'{"a": 1}'
    assert read_artifact(tmp_path / "p.json") == b'{"b": 2}'


def test_a_sealed_folders_file_moved_or_renamed_fails_to_open(tmp_path: Path) -> None:
    """Files of a sealed model or report folder are bound to their path within it."""
    ring = Keyring.generate()
    model = tmp_path / "g" / "model"
    for name in ("model.onnx", "index.bin"):
        write_sealed(model / name, name.encode() * 10, ring, file_context(Path("model") / name))
    assert read_artifact(model / "index.bin", ring) == b"index.bin" * 10
    (model / "index.bin").write_bytes((model / "model.onnx").read_bytes())  # swapped
    with pytest.raises(IntegrityError, match="moved or copied here"):
        read_artifact(model / "index.bin", ring)
    elsewhere = tmp_path / "h" / "report"
    elsewhere.mkdir(parents=True)
    (elsewhere / "model.onnx").write_bytes((model / "model.onnx").read_bytes())
    with pytest.raises(IntegrityError, match="moved or copied here"):
        read_artifact(elsewhere / "model.onnx", ring)
