"""The audit job end to end on real files: outputs, determinism and bad input."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

import despina
from despina.audit.report import SAMPLE_COLUMNS
from despina.core.config import AuditConfig, ModelConfig, TrainConfig
from despina.core.errors import DataError, PathEscapeError
from despina.models import load_model
from despina.preprocessing import ImagePipeline
from tests.conftest import huge_png, tree

FAST = AuditConfig(folds=2, workers=1, model=ModelConfig(width=8), train=TrainConfig(epochs=2))


def test_outputs_are_complete(digits_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    report = despina.audit(digits_folder, out, FAST)
    for name in ("samples.csv", "summary.json", "report.html", "cleaned.csv", "model"):
        assert (out / name).exists(), name
    df = pd.read_csv(out / "samples.csv")
    assert tuple(df.columns[: len(SAMPLE_COLUMNS)]) == SAMPLE_COLUMNS
    assert len(df) == 200 and df["id"].is_unique
    summary = json.loads((out / "summary.json").read_text())
    assert {"counts", "health_score", "config", "timings", "versions"} <= set(summary)
    assert 0 <= summary["health_score"] <= 1
    assert 0 <= summary["oof_accuracy"] <= 1
    html = (out / "report.html").read_text()
    assert "<html" in html and "http://" not in html.replace("http://www.w3.org", "")
    saved = load_model(out / "model")
    pipe = ImagePipeline.load(out / "model" / "preprocessing.json")
    assert saved.class_names == [str(i) for i in range(10)] and pipe.size == 8
    assert report.counts["samples"] == 200


def test_checks_that_need_no_model_train_none(digits_folder: Path, tmp_path: Path) -> None:
    """Duplicates and defects come from the decode pass alone: no folds, no final model."""
    out = tmp_path / "out"
    cfg = FAST.model_copy(update={"checks": ("duplicate", "defect")})
    report = despina.audit(digits_folder, out, cfg)
    assert not (out / "model").exists() and (out / "samples.csv").exists()
    assert "final_model" not in report.summary["timings"]
    assert "cross_validation" not in report.summary["timings"]
    assert report.summary["oof_accuracy"] is None and report.counts["samples"] == 200


def test_same_seed_gives_the_same_samples_csv(digits_folder: Path, tmp_path: Path) -> None:
    despina.audit(digits_folder, tmp_path / "a", FAST)
    despina.audit(digits_folder, tmp_path / "b", FAST)
    a = (tmp_path / "a" / "samples.csv").read_text()
    assert a == (tmp_path / "b" / "samples.csv").read_text()


def test_bad_files_become_defects_and_the_rest_is_audited(
    digits_folder: Path, tmp_path: Path, bomb_png: Path
) -> None:
    (digits_folder / "3" / "empty.png").write_bytes(b"")
    (digits_folder / "3" / "notes.txt").write_text("not an image")
    good = digits_folder / "4" / next(iter(sorted((digits_folder / "4").iterdir()))).name
    (digits_folder / "4" / "trunc.png").write_bytes(good.read_bytes()[:30])
    (digits_folder / "5" / "huge.png").write_bytes(bomb_png.read_bytes())
    before = tree(tmp_path)
    report = despina.audit(digits_folder, tmp_path / "out", FAST)
    df = report.samples.set_index("id")
    assert df.loc["3/empty.png", "defects"] == "corrupt"
    assert df.loc["3/notes.txt", "defects"] == "corrupt"
    assert df.loc["4/trunc.png", "defects"] == "corrupt"
    assert df.loc["5/huge.png", "defects"] == "oversized"
    cleaned = pd.read_csv(tmp_path / "out" / "cleaned.csv")
    assert not set(cleaned["id"]) & {"3/empty.png", "3/notes.txt", "4/trunc.png", "5/huge.png"}
    assert {p for p in tree(tmp_path) - before if not p.startswith("out")} == set()


def test_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    with pytest.raises(DataError, match="no images"):
        despina.audit(tmp_path / "data", tmp_path / "out", FAST)


def test_one_class_only(make_digits: Callable[..., Path], tmp_path: Path) -> None:
    folder = make_digits(classes=1)
    with pytest.raises(DataError, match="one class"):
        despina.audit(folder, tmp_path / "out", FAST)


def test_class_with_a_single_image(make_digits: Callable[..., Path], tmp_path: Path) -> None:
    folder = make_digits(per_class=10, classes=3)
    for p in sorted((folder / "2").iterdir())[1:]:
        p.unlink()
    with pytest.raises(DataError) as err:
        despina.audit(folder, tmp_path / "out", FAST)
    # The message names the class and asks for what would work, never "--folds 2 or fewer".
    assert "class '2' has only 1 readable image" in str(err.value)
    assert "Add images to it, or move its folder out" in str(err.value)
    assert "--folds" not in str(err.value)


def test_folds_larger_than_the_smallest_class(
    make_digits: Callable[..., Path], tmp_path: Path
) -> None:
    folder = make_digits(per_class=4, classes=3)
    with pytest.raises(DataError, match=r"--folds 5 is more than class '0' has images \(4\)"):
        despina.audit(folder, tmp_path / "out", AuditConfig(folds=5))
    with pytest.raises(DataError, match="Use --folds 4 or fewer"):
        despina.audit(folder, tmp_path / "out", AuditConfig(folds=5))


def test_only_unreadable_files(tmp_path: Path) -> None:
    for c in ("a", "b"):
        (tmp_path / "d" / c).mkdir(parents=True)
        (tmp_path / "d" / c / "x.png").write_bytes(b"garbage")
    with pytest.raises(DataError, match="could be read"):
        despina.audit(tmp_path / "d", tmp_path / "out", FAST)


def test_manifest_escaping_writes_nothing(digits_folder: Path, tmp_path: Path) -> None:
    inner = digits_folder / "0"
    pd.DataFrame({"path": ["../1/x.png"], "label": ["a"]}).to_csv(inner / "m.csv", index=False)
    with pytest.raises(PathEscapeError):
        despina.audit(inner / "m.csv", tmp_path / "out", FAST)
    assert not (tmp_path / "out").exists()


def test_manifest_with_missing_files_audits_the_rest(digits_folder: Path, tmp_path: Path) -> None:
    rows = [
        {"path": p.relative_to(digits_folder).as_posix(), "label": p.parent.name}
        for p in sorted(digits_folder.rglob("*.png"))
    ]
    rows.append({"path": "7/gone.png", "label": "7"})
    pd.DataFrame(rows).to_csv(digits_folder / "m.csv", index=False)
    report = despina.audit(digits_folder / "m.csv", tmp_path / "out", FAST)
    assert report.samples.set_index("id").loc["7/gone.png", "defects"] == "missing"


def test_grayscale_png_and_colour_jpeg_mix(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        (tmp_path / "d" / c).mkdir(parents=True)
        for i in range(6):
            img = rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)
            cv2.imwrite(str(tmp_path / "d" / c / f"{i}.jpg"), img)
    report = despina.audit(tmp_path / "d", tmp_path / "out", FAST)
    assert report.summary["color_mode"] == "rgb"


def test_bomb_helper_makes_a_real_png(tmp_path: Path) -> None:
    from PIL import Image

    path = huge_png(tmp_path / "b.png", side=300)
    with Image.open(path) as im:
        assert im.size == (300, 300)


class Recorder:
    """Records what the audit reports through the progress protocol."""

    def __init__(self) -> None:
        self.totals: dict[str, int | None] = {}
        self.done: dict[str, int] = {}
        self.finished: list[str] = []

    def start(self, stage: str, total: int | None = None) -> None:
        self.totals[stage], self.done[stage] = total, 0

    def advance(self, stage: str, steps: int = 1) -> None:
        self.done[stage] += steps

    def finish(self, stage: str) -> None:
        self.finished.append(stage)


@pytest.mark.parametrize("workers", [1, 2])
def test_every_progress_stage_runs_to_its_total(
    digits_folder: Path, tmp_path: Path, workers: int
) -> None:
    rec = Recorder()
    despina.audit(
        digits_folder, tmp_path / "out", FAST.model_copy(update={"workers": workers}), progress=rec
    )
    assert {"decode", "cross-validation", "checks", "final model"} <= set(rec.totals)
    assert set(rec.finished) == set(rec.totals)
    for stage in ("decode", "cross-validation", "checks"):
        assert rec.done[stage] == rec.totals[stage], stage
    # 2 folds x (2 epochs in the first round + a third of them, rounded up, in the second)
    assert rec.totals["cross-validation"] == 2 * (2 + 1)
