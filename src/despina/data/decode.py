"""Decode one image safely: every failure becomes a recorded defect, never a crash."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from despina.data.images import ImageRecord

# Broken files are findings, reported by Despina; OpenCV's own warnings would only be noise.
cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)

#: Defects the loader itself records; such samples are left out of training.
LOAD_DEFECTS = ("corrupt", "oversized", "missing")


@dataclass(frozen=True)
class Decoded:
    """An RGB uint8 image (H, W, 3), or the load defect that stopped it and why."""

    image: np.ndarray | None
    defect: str | None = None
    reason: str = ""


_PNG = b"\x89PNG\r\n\x1a\n"
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _fast_size(data: bytes) -> tuple[int, int] | None:
    """Width and height straight from a PNG's IHDR or a JPEG's frame header, or None.

    Far cheaper than opening the file with Pillow, which matters per upload at serving
    time; anything unusual falls back to Pillow.
    """
    if data[:8] == _PNG and data[12:16] == b"IHDR" and len(data) >= 24:
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data[:2] != b"\xff\xd8":
        return None
    i = 2
    while i + 9 < len(data) and data[i] == 0xFF:
        marker = data[i + 1]
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        if marker in _SOF:
            h = int.from_bytes(data[i + 5 : i + 7], "big")
            w = int.from_bytes(data[i + 7 : i + 9], "big")
            return (w, h) if w and h else None
        if length < 2:
            return None
        i += 2 + length
    return None


def header_size(data: bytes, path: str) -> tuple[int, int] | str:
    """Read width and height from the header only (no pixel decoding), or return why not."""
    import io

    fast = _fast_size(data)
    if fast is not None:
        return fast

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                return int(im.size[0]), int(im.size[1])
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        return "oversized"
    except Exception as exc:  # Pillow raises many types for unknown or broken headers
        return f"not a readable image ({type(exc).__name__}: {exc})"


def _truncated_jpeg(data: bytes) -> bool:
    return data[:2] == b"\xff\xd8" and b"\xff\xd9" not in data[-64:]


def decode_bytes(data: bytes, name: str, max_pixels: int) -> Decoded:
    """Decode encoded image bytes to RGB, refusing empty, truncated and oversized input."""
    if not data:
        return Decoded(None, "corrupt", "zero-byte file")
    size = header_size(data, name)
    if size == "oversized":
        return Decoded(None, "oversized", f"over Pillow's decompression-bomb limit: {name}")
    if isinstance(size, str):
        return Decoded(None, "corrupt", size)
    width, height = size
    if width * height > max_pixels:
        return Decoded(
            None, "oversized", f"{width}x{height} is over the {max_pixels:,}-pixel limit"
        )
    if _truncated_jpeg(data):
        return Decoded(None, "corrupt", "truncated JPEG (no end-of-image marker)")
    buf = np.frombuffer(data, dtype=np.uint8)
    if data[:8] == _PNG and len(data) > 25 and data[25] in (4, 6):  # grey or RGB with alpha
        return _on_white(buf)
    img = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if img is None:
        # OpenCV lacks some formats Pillow reads (and vice versa): try Pillow fully.
        import io

        try:
            with Image.open(io.BytesIO(data)) as im:
                rgb = np.asarray(im.convert("RGB"))
        except Exception as exc:
            return Decoded(None, "corrupt", f"cannot decode ({type(exc).__name__}: {exc})")
        return Decoded(np.ascontiguousarray(rgb))
    return Decoded(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))


def _on_white(buf: np.ndarray) -> Decoded:
    """A PNG with an alpha channel, composited on white as a viewer shows it: the colour
    under a transparent pixel is often black, and would make a logo a dark image."""
    img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    if img is None or img.ndim != 3 or img.shape[2] not in (2, 4):
        return Decoded(None, "corrupt", "cannot decode the PNG with alpha")
    scale = 65535.0 if img.dtype == np.uint16 else 255.0
    x = img.astype(np.float32) / scale
    colour, alpha = x[..., :-1], x[..., -1:]
    # Grey to RGB, or OpenCV's BGR to RGB.
    colour = np.repeat(colour, 3, axis=2) if colour.shape[2] == 1 else colour[..., ::-1]
    rgb = colour * alpha + (1.0 - alpha)
    return Decoded(np.ascontiguousarray(np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8)))


def as_rgb(array: np.ndarray) -> np.ndarray:
    """An in-memory array (H, W), (H, W, 1) or (H, W, 3) as RGB uint8."""
    a = np.asarray(array)
    if a.dtype != np.uint8:
        a = np.clip(a, 0, 255).astype(np.uint8)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    return np.ascontiguousarray(a[:, :, :3])


def decode_image(record: ImageRecord, max_pixels: int = 64_000_000) -> Decoded:
    """Decode a record's image (from its array or its file) to RGB uint8."""
    if record.array is not None:
        return Decoded(as_rgb(record.array))
    if record.missing:
        return Decoded(None, "missing", f"file not found: {record.path}")
    try:
        if "://" in record.path:  # an fsspec URI (s3://...): read through fsspec
            import fsspec

            with fsspec.open(record.path, "rb") as fh:
                data = fh.read()
        else:
            data = Path(record.path).read_bytes()
    except FileNotFoundError:
        return Decoded(None, "missing", f"file not found: {record.path}")
    except OSError as exc:
        return Decoded(None, "corrupt", f"unreadable file ({exc.strerror or exc})")
    return decode_bytes(data, record.path, max_pixels)
