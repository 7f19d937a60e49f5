"""Encryption at rest, envelope style: AES-256-GCM with a fresh data key per artifact,
that key wrapped by a master key (``cryptography``'s AESGCM; nothing of our own).

A sealed artifact is one file::

    b"DSPENC1\\n" | header length (4 bytes, big-endian) | header (JSON) | ciphertext

The header names the master key (``kid``, a fingerprint, never the key), the wrapped
data key and the nonce. Rotating the master key rewrites headers only (:func:`rewrap`):
the ciphertext is copied byte for byte, never decrypted. GCM's tag makes a tampered,
truncated or wrongly keyed file fail with :class:`IntegrityError`, never with garbage.

Master keys come from ``DESPINA_MASTER_KEY`` (base64 of 32 bytes; previous keys that may
still wrap artifacts in ``DESPINA_PREVIOUS_MASTER_KEYS``, comma-separated) or from a key
file readable by its owner only (``DESPINA_KEY_FILE``, default ``DESPINA_HOME/master.key``),
which :meth:`Keyring.load` creates on first use.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import stat
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from despina.core.errors import ConfigError, IntegrityError, NotFoundError
from despina.security.settings import key_file_from_env, master_keys_from_env

MAGIC = b"DSPENC1\n"
_LEN = struct.Struct(">I")
_MAX_HEADER = 4096
_KEY_AAD = b"despina data key"
_PAYLOAD_AAD = b"despina artifact"


def fingerprint(key: bytes) -> str:
    """The public id of a master key (what headers name)."""
    return hashlib.sha256(b"despina kid" + key).hexdigest()[:16]


def _decode_key(text: str, where: str) -> bytes:
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except ValueError:
        key = b""
    if len(key) != 32:
        raise ConfigError(
            f"{where} must be 32 random bytes in base64 (44 characters); make one with: "
            "python -c 'import base64, os; print(base64.b64encode(os.urandom(32)).decode())'"
        )
    return key


def check_private(path: Path) -> None:
    """Refuse a secret file that others than its owner can read (like ssh does)."""
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"{path} is readable by other users (mode {stat.S_IMODE(mode):o}); "
            f"run: chmod 600 {path}"
        )


def write_atomic(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write ``data`` to a temporary name beside ``path`` (created with ``mode``, less the
    umask; owner-only unless asked), then rename it over ``path``: readers see the old
    file or the new, never half. A folder it creates is owner-only."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode), "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_private(path: Path, text: str) -> None:
    """Write a secret file with mode 0600 from the start (no window where others can read)."""
    write_atomic(path, text.encode("utf-8"), 0o600)


@dataclass(frozen=True)
class Keyring:
    """The current master key (wraps new data keys) and older ones (unwrap only)."""

    current: bytes
    previous: tuple[bytes, ...] = ()
    path: Path | None = None  # the key file, when the keys come from one

    @property
    def kid(self) -> str:
        return fingerprint(self.current)

    def key(self, kid: str) -> bytes:
        for k in (self.current, *self.previous):
            if fingerprint(k) == kid:
                return k
        raise IntegrityError(
            f"this artifact is sealed with master key {kid}, which is not in the keyring; "
            "set DESPINA_PREVIOUS_MASTER_KEYS to the key it was sealed with"
        )

    @classmethod
    def generate(cls) -> Keyring:
        return cls(secrets.token_bytes(32))

    @classmethod
    def load(cls, key_file: Path, *, create: bool = True) -> Keyring:
        """From ``DESPINA_MASTER_KEY`` if set, else from ``key_file`` (created if missing)."""
        given = master_keys_from_env()
        if given is not None:
            return cls(
                _decode_key(given[0], "DESPINA_MASTER_KEY"),
                tuple(_decode_key(p, "DESPINA_PREVIOUS_MASTER_KEYS") for p in given[1]),
            )
        key_file = key_file_from_env() or key_file
        if not key_file.exists():
            if not create:
                raise NotFoundError(
                    f"no master key: set DESPINA_MASTER_KEY or create {key_file} "
                    "(despina server start does on first use)"
                )
            ring = cls.generate()
            ring = cls(ring.current, path=key_file)
            ring.save()
            return ring
        check_private(key_file)
        try:
            data = json.loads(key_file.read_text(encoding="utf-8"))
            keys = [_decode_key(k, str(key_file)) for k in data["keys"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"cannot read the key file {key_file}: {exc}") from None
        return cls(keys[0], tuple(keys[1:]), path=key_file)

    def save(self) -> None:
        if self.path is None:
            raise ConfigError(
                "these keys come from DESPINA_MASTER_KEY; put the new key there and the old "
                "one in DESPINA_PREVIOUS_MASTER_KEYS, then run despina keys rotate"
            )
        keys = [base64.b64encode(k).decode() for k in (self.current, *self.previous)]
        write_private(self.path, json.dumps({"keys": keys}, indent=1) + "\n")

    def with_new_key(self) -> Keyring:
        """A fresh current key; the old ones stay to unwrap until artifacts are re-wrapped."""
        return Keyring(secrets.token_bytes(32), (self.current, *self.previous), self.path)

    def without_previous(self) -> Keyring:
        return Keyring(self.current, (), self.path)


def _wrap(ring: Keyring, data_key: bytes) -> dict[str, str]:
    nonce = secrets.token_bytes(12)
    wrapped = AESGCM(ring.current).encrypt(nonce, data_key, _KEY_AAD)
    return {"kid": ring.kid, "wrapped": base64.b64encode(nonce + wrapped).decode()}


def _unwrap(ring: Keyring, header: dict[str, str]) -> bytes:
    blob = base64.b64decode(header["wrapped"])
    try:
        return AESGCM(ring.key(header["kid"])).decrypt(blob[:12], blob[12:], _KEY_AAD)
    except InvalidTag:
        raise IntegrityError("the artifact's data key does not unwrap: tampered header") from None


def _payload_aad(context: str) -> bytes:
    """What the payload's tag also covers: where the artifact belongs (a group and
    partition), so a file moved or swapped into another place fails to open."""
    return _PAYLOAD_AAD + (b"\0" + context.encode() if context else b"")


def seal(data: bytes, ring: Keyring, context: str = "") -> bytes:
    """``data`` encrypted under a fresh data key, in the sealed-artifact format, bound to
    ``context`` (opened only with the same one)."""
    data_key = AESGCM.generate_key(bit_length=256)
    nonce = secrets.token_bytes(12)
    header = {"v": "1", "alg": "AES-256-GCM", "nonce": base64.b64encode(nonce).decode()}
    if context:  # readable, so a file can be opened on its own; the tag still checks it
        header["ctx"] = context
    header.update(_wrap(ring, data_key))
    raw = json.dumps(header, sort_keys=True).encode()
    return (
        MAGIC
        + _LEN.pack(len(raw))
        + raw
        + AESGCM(data_key).encrypt(nonce, data, _payload_aad(context))
    )


def is_sealed(blob: bytes) -> bool:
    return blob.startswith(MAGIC)


def _split(blob: bytes, what: str) -> tuple[dict[str, str], int]:
    """The header and where the ciphertext starts; IntegrityError if it is cut short."""
    start = len(MAGIC) + _LEN.size
    if len(blob) < start:
        raise IntegrityError(f"{what} is truncated (no complete header)")
    (n,) = _LEN.unpack_from(blob, len(MAGIC))
    if n > _MAX_HEADER or len(blob) < start + n:
        raise IntegrityError(f"{what} is truncated or its header is damaged")
    try:
        header = json.loads(blob[start : start + n])
        if not {"kid", "wrapped", "nonce"} <= header.keys():
            raise ValueError("fields missing")
    except ValueError:
        raise IntegrityError(f"{what} has a damaged header") from None
    return header, start + n


def unseal(
    blob: bytes, ring: Keyring, what: str = "the artifact", context: str | None = None
) -> bytes:
    """The plaintext of a sealed artifact; IntegrityError if anything was changed, or it
    was sealed for another place than ``context`` (None: the place its header names)."""
    header, body = _split(blob, what)
    if context is None:
        context = header.get("ctx", "")
    data_key = _unwrap(ring, header)
    try:
        return AESGCM(data_key).decrypt(
            base64.b64decode(header["nonce"]), blob[body:], _payload_aad(context)
        )
    except InvalidTag:
        raise IntegrityError(
            f"{what} failed its integrity check (tampered with, truncated, or moved here "
            "from another group or partition); restore it or re-run the task that wrote it"
        ) from None


def rewrap(blob: bytes, ring: Keyring, what: str = "the artifact") -> bytes:
    """The same artifact with its data key wrapped by the current master key; the
    ciphertext is copied unchanged."""
    header, body = _split(blob, what)
    header.update(_wrap(ring, _unwrap(ring, header)))
    raw = json.dumps(header, sort_keys=True).encode()
    return MAGIC + _LEN.pack(len(raw)) + raw + blob[body:]


# ---- files -------------------------------------------------------------------------
def write_sealed(path: Path, data: bytes, ring: Keyring | None, context: str = "") -> None:
    """Write ``data`` atomically (:func:`write_atomic`), sealed (to ``context``) when
    ``ring``."""
    write_atomic(path, seal(data, ring, context) if ring is not None else data)


def rewrap_file(path: Path, ring: Keyring) -> bool:
    """Re-wrap one sealed file in place (atomically); False if it is not sealed or already
    under the current key."""
    blob = path.read_bytes()
    if not is_sealed(blob):
        return False
    header, _ = _split(blob, str(path))
    if header["kid"] == ring.kid:
        return False
    write_atomic(path, rewrap(blob, ring, str(path)))
    return True


def sealed_files(root: Path) -> list[Path]:
    """Every sealed file under ``root`` (symlinks are not followed)."""
    found = []
    for path in sorted(root.rglob("*")):
        if path.is_symlink() or not path.is_file():
            continue
        with path.open("rb") as fh:
            if fh.read(len(MAGIC)) == MAGIC:
                found.append(path)
    return found


def rotate(
    ring: Keyring, root: Path, rewrap_more: Callable[[Keyring], int] | None = None
) -> tuple[Keyring, int]:
    """Re-wrap every sealed file under ``root`` with a new master key (a key file) or with
    the current one (``DESPINA_MASTER_KEY``, the old one in ``..._PREVIOUS_...``).
    ``rewrap_more`` re-wraps what is sealed elsewhere (values in the store), with both keys
    at hand; it returns its count.

    The key file holds old and new keys until every file is re-wrapped, so an interrupted
    rotation loses nothing: run it again. Returns the keyring now in force and the count.
    """
    if ring.path is not None:
        ring = ring.with_new_key()
        ring.save()
    count = sum(rewrap_file(p, ring) for p in sealed_files(root))
    if rewrap_more is not None:
        count += rewrap_more(ring)
    if ring.path is not None:
        ring = ring.without_previous()
        ring.save()
    return ring, count


def default_keyring(*, create: bool = False) -> Keyring:
    """The keyring of ``DESPINA_HOME`` (or ``DESPINA_MASTER_KEY``). Only the server
    creates it (``create``): a reader without the key must fail, not invent a new key."""
    from despina.core.config import default_home

    return Keyring.load(default_home() / "master.key", create=create)


FILE_CONTEXT = "file "


def read_artifact(
    path: Path | str, ring: Keyring | None = None, context: str | None = None, sealed: bool = False
) -> bytes:
    """A file's plaintext: decrypted when it is sealed (with ``ring``, else the keyring
    of ``DESPINA_HOME``; bound to ``context``), as is when it is not, unless ``sealed``
    says it must be (encryption is on: a plain file put in its place is refused)."""
    blob = Path(path).read_bytes()
    if not is_sealed(blob):
        if sealed:
            raise IntegrityError(
                f"{path} is not sealed although encryption is on: a plain file was put in "
                "its place; restore it or re-run the task that wrote it"
            )
        return blob
    if context is None:  # a file bound to its path within its folder must be read there
        bound = _split(blob, str(path))[0].get("ctx", "")
        if bound.startswith(FILE_CONTEXT) and not Path(path).as_posix().endswith(
            "/" + bound[len(FILE_CONTEXT) :]
        ):
            raise IntegrityError(
                f"{path} was sealed as {bound[len(FILE_CONTEXT) :]!r}: it was moved or copied "
                "here from elsewhere; restore it or re-run the task that wrote it"
            )
    return unseal(blob, ring or default_keyring(), str(path), context)


def file_context(relative: Path) -> str:
    """What a file of a sealed folder is bound to: its path within the folder."""
    return FILE_CONTEXT + relative.as_posix()
