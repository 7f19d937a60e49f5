"""Unusual but valid image files decode as a viewer shows them and go through every check
of a real audit with a defined result: a finding or none, never an error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import despina
from despina.core.config import AuditConfig, ModelConfig, TrainConfig
from despina.data.decode import decode_bytes
from tests.conftest import write_digits

#: Left half red, right half blue, the top quarter white.
BASE = np.zeros((40, 60, 3), np.uint8)
BASE[:, :30], BASE[:, 30:], BASE[:10] = (200, 30, 30), (30, 30, 200), (250, 250, 250)


def _odd_files(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}

    def save(name: str, image: Image.Image, **kw: object) -> None:
        paths[name] = folder / name
        image.save(paths[name], **kw)

    save("grey16.png", Image.fromarray(BASE[..., 0].astype(np.uint16) * 257))
    save("palette.png", Image.fromarray(BASE).convert("P", palette=Image.Palette.ADAPTIVE))
    rgba = np.dstack([BASE, np.full(BASE.shape[:2], 255, np.uint8)])
    rgba[20:] = 0  # the bottom half transparent, black underneath
    save("alpha.png", Image.fromarray(rgba, "RGBA"))
    save("cmyk.jpg", Image.fromarray(BASE).convert("CMYK"), quality=95)
    exif_image = Image.fromarray(BASE)
    exif = exif_image.getexif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    save("rotated.jpg", exif_image, exif=exif, quality=95)
    save("tiny.png", Image.fromarray(BASE[8:13, 25:31]))
    save("one_pixel.png", Image.fromarray(BASE[:1, :1]))
    save("one_colour.png", Image.fromarray(np.full((32, 32, 3), 90, np.uint8)))
    return paths


def _decoded(path: Path) -> np.ndarray:
    result = decode_bytes(path.read_bytes(), path.name, 10**8)
    assert result.defect is None, result.reason
    assert result.image is not None and result.image.dtype == np.uint8
    assert result.image.ndim == 3 and result.image.shape[2] == 3
    return result.image


def test_odd_files_decode_as_a_viewer_shows_them(tmp_path: Path) -> None:
    files = _odd_files(tmp_path)
    grey = _decoded(files["grey16.png"])
    assert grey[0, 0].tolist() == [250] * 3 and grey[-1, -1].tolist() == [30] * 3
    assert _decoded(files["palette.png"])[-1, -1].tolist() == [30, 30, 200]
    alpha = _decoded(files["alpha.png"])
    assert alpha[0, 0].tolist() == [250] * 3
    assert alpha[-1, -1].tolist() == [255] * 3  # transparent shows white, not black
    cmyk = _decoded(files["cmyk.jpg"])
    assert np.abs(cmyk[-1, 0].astype(int) - [200, 30, 30]).max() <= 12
    rotated = _decoded(files["rotated.jpg"])
    assert rotated.shape == (60, 40, 3)  # turned upright: the white band is now on the right
    assert rotated[30, -1].min() >= 240 and rotated[30, 0].max() < 240
    assert _decoded(files["tiny.png"]).shape == (5, 6, 3)


@pytest.mark.slow
def test_odd_files_go_through_every_check_of_an_audit(tmp_path: Path) -> None:
    data = write_digits(tmp_path / "data", per_class=12, classes=3)
    odd = _odd_files(data / "0")
    cfg = AuditConfig(folds=2, workers=1, model=ModelConfig(width=8), train=TrainConfig(epochs=1))
    report = despina.audit(data, tmp_path / "out", cfg)
    ran = {name for name, outcome in report.outcomes.items() if outcome.result is not None}
    assert {"label", "outlier", "defect", "duplicate"} <= ran
    df = pd.read_csv(tmp_path / "out" / "samples.csv").set_index("id")
    rows = {name: df.loc[path.relative_to(data).as_posix()] for name, path in odd.items()}
    for name, row in rows.items():
        defects = str(row["defects"]) if pd.notna(row["defects"]) else ""
        for load_defect in ("corrupt", "missing", "oversized"):
            assert load_defect not in defects, (name, defects)
        assert pd.notna(row["predicted_label"]) and pd.notna(row["outlier_score"]), name
    assert "low_information" in str(rows["one_colour.png"]["defects"])
    assert "odd_size" in str(rows["one_pixel.png"]["defects"])
    # The palette PNG and the CMYK JPEG are one picture; single-colour images are no copies.
    assert rows["palette.png"]["duplicate_group"] == rows["cmyk.jpg"]["duplicate_group"]
    assert pd.isna(rows["one_colour.png"]["duplicate_group"])
