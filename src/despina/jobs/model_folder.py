"""Checks that a model folder can be served, cheap enough for the control plane to run
at deploy time (nothing heavy is imported)."""

from __future__ import annotations

import json
from pathlib import Path

from despina.core.artifacts import (
    DETECTOR_DIR,
    FORMAT_VERSION,
    MODEL_CONFIG,
    REFERENCE_FILE,
    SERVING_FILES,
)
from despina.core.errors import ConfigError, ModelError, NotFoundError


def check_model_folder(folder: str | Path) -> Path:
    """The resolved folder if it holds everything serving needs, written by this format
    version; otherwise a ModelError that says how to rebuild it. Loads nothing heavy."""
    path = Path(folder).expanduser().resolve()
    if not path.is_dir():
        raise NotFoundError(f"model folder {path} does not exist")
    missing = [f for f in SERVING_FILES if not (path / f).is_file()]
    if missing:
        raise ModelError(
            f"{path} is not a complete Despina model folder (missing {', '.join(missing)}); "
            "re-run `despina audit` or a train job to write one"
        )
    for name in (MODEL_CONFIG, REFERENCE_FILE):
        try:
            found = json.loads((path / name).read_text()).get("format_version")
        except (OSError, ValueError, AttributeError) as exc:
            raise ModelError(f"cannot read {path / name}: {exc}") from exc
        if found != FORMAT_VERSION:
            raise ModelError(
                f"{path / name} has format version {found!r} but this Despina serves version "
                f"{FORMAT_VERSION}: re-run `despina audit` or a train job to rebuild it"
            )
    return path


def check_extractor(spec: str, folder: Path) -> None:
    """Refuse an extractor name that serving could not build for this model folder."""
    import cv2

    if spec in ("whole", "contours"):
        return
    if spec.startswith("cascade:"):
        name = spec.split(":", 1)[1]
        name = {"frontalface": "frontalface_default"}.get(name, name)
        cascades = Path(cv2.data.haarcascades)  # type: ignore[attr-defined]
        if not (cascades / f"haarcascade_{name}.xml").is_file():
            raise ConfigError(f"no OpenCV cascade named {spec.split(':', 1)[1]!r}")
        return
    if spec == "learned":
        if not (folder / DETECTOR_DIR / "detector.onnx").is_file():
            raise NotFoundError(
                f"{folder} has no detector/; build one with `despina train-detector DATASET "
                f"--backgrounds DIR --out {folder}`"
            )
        return
    raise ConfigError(f"unknown extractor {spec!r}; use whole, contours, cascade:NAME or learned")
