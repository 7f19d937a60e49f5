from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from despina.data.decode import decode_bytes, decode_image
from despina.data.images import ImageRecord


def _rec(path: Path) -> ImageRecord:
    return ImageRecord(id=path.name, path=str(path), label="x")


def test_a_png_decodes_to_rgb(tmp_path: Path) -> None:
    img = np.zeros((5, 7), np.uint8)
    img[2, 3] = 200
    cv2.imwrite(str(tmp_path / "a.png"), img)
    dec = decode_image(_rec(tmp_path / "a.png"))
    assert dec.defect is None and dec.image is not None
    assert dec.image.shape == (5, 7, 3)
    assert dec.image[2, 3].tolist() == [200, 200, 200]


def test_colour_order_is_rgb(tmp_path: Path) -> None:
    bgr = np.zeros((4, 4, 3), np.uint8)
    bgr[..., 2] = 255  # red in OpenCV's BGR order
    cv2.imwrite(str(tmp_path / "red.png"), bgr)
    dec = decode_image(_rec(tmp_path / "red.png"))
    assert dec.image is not None and dec.image[0, 0].tolist() == [255, 0, 0]


def test_zero_byte_file_is_corrupt(tmp_path: Path) -> None:
    (tmp_path / "z.png").write_bytes(b"")
    dec = decode_image(_rec(tmp_path / "z.png"))
    assert (dec.image, dec.defect) == (None, "corrupt")
    assert "zero-byte" in dec.reason


def test_non_image_is_corrupt(tmp_path: Path) -> None:
    (tmp_path / "t.png").write_text("hello, not an image")
    assert decode_image(_rec(tmp_path / "t.png")).defect == "corrupt"


def test_truncated_png_and_jpeg_are_corrupt() -> None:
    img = (np.arange(64 * 64) % 251).astype(np.uint8).reshape(64, 64)
    for ext in (".png", ".jpg"):
        ok, buf = cv2.imencode(ext, img)
        assert ok
        data = buf.tobytes()
        dec = decode_bytes(data[: len(data) // 2], "x" + ext, 10**8)
        assert dec.defect == "corrupt", ext


def test_oversized_image_is_refused_from_its_header(bomb_png: Path) -> None:
    dec = decode_image(_rec(bomb_png))
    assert dec.defect == "oversized" and dec.image is None


def test_pixel_limit_is_configurable(tmp_path: Path) -> None:
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((100, 100), np.uint8))
    dec = decode_image(_rec(tmp_path / "a.png"), max_pixels=5000)
    assert dec.defect == "oversized" and "5,000" in dec.reason


def test_missing_file_is_a_missing_defect(tmp_path: Path) -> None:
    assert decode_image(_rec(tmp_path / "nope.png")).defect == "missing"


def test_in_memory_arrays_need_no_file() -> None:
    rec = ImageRecord(id="a", path="mem", label="x", array=np.full((3, 3), 9, np.uint8))
    dec = decode_image(rec)
    assert dec.image is not None and dec.image.shape == (3, 3, 3)
