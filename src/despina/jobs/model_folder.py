"""Checks that a model folder can be served, cheap enough for the control plane to run
at deploy time (nothing heavy is imported)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from despina.core.artifacts import (
    DETECTOR_DIR,
    FORMAT_VERSION,
    MODEL_CONFIG,
    REFERENCE_FILE,
    SERVING_FILES,
)
from despina.core.errors import ConfigError, ModelError, NotFoundError
from despina.security.envelope import read_artifact

_CASCADE_ALIASES = {"frontalface": "frontalface_default"}


def read_model_folder(folder: str | Path) -> tuple[Path, dict[str, Any], dict[str, Any]]:
    """The resolved folder with its parsed model.json and reference.json, if it holds
    everything serving needs, written by this format version; otherwise a ModelError
    that says how to rebuild it. Loads nothing heavy."""
    path = Path(folder).expanduser().resolve()
    if not path.is_dir():
        raise NotFoundError(f"model folder {path} does not exist")
    missing = [f for f in SERVING_FILES if not (path / f).is_file()]
    if missing:
        raise ModelError(
            f"{path} is not a complete Despina model folder (missing {', '.join(missing)}); "
            "re-run `despina audit` or a train job to write one"
        )
    parsed = []
    for name in (MODEL_CONFIG, REFERENCE_FILE):
        try:
            data = json.loads(read_artifact(path / name))
        except (OSError, ValueError) as exc:
            raise ModelError(f"cannot read {path / name}: {exc}") from exc
        found = data.get("format_version") if isinstance(data, dict) else None
        if found != FORMAT_VERSION:
            raise ModelError(
                f"{path / name} has format version {found!r} but this Despina serves version "
                f"{FORMAT_VERSION}: re-run `despina audit` or a train job to rebuild it"
            )
        parsed.append(data)
    return path, parsed[0], parsed[1]


def check_model_folder(folder: str | Path) -> Path:
    """The resolved folder, if :func:`read_model_folder` accepts it."""
    return read_model_folder(folder)[0]


def cascade_path(name: str) -> Path:
    """The XML file of an OpenCV Haar cascade that ships with OpenCV, by short name
    (``frontalface`` or any ``haarcascade_NAME.xml``); a ConfigError lists the names."""
    import cv2

    folder = Path(cv2.data.haarcascades)  # type: ignore[attr-defined]
    path = folder / f"haarcascade_{_CASCADE_ALIASES.get(name, name)}.xml"
    if not path.is_file():
        names = sorted(p.stem.removeprefix("haarcascade_") for p in folder.glob("*.xml"))
        raise ConfigError(
            f"no OpenCV cascade named {name!r}; use one of: frontalface, " + ", ".join(names)
        )
    return path


def check_extractor(spec: str, folder: Path) -> None:
    """Refuse an extractor name that serving could not build for this model folder."""
    if spec in ("whole", "contours"):
        return
    if spec.startswith("cascade:"):
        cascade_path(spec.split(":", 1)[1])
        return
    if spec == "learned":
        if not (folder / DETECTOR_DIR / "detector.onnx").is_file():
            raise NotFoundError(
                f"{folder} has no detector/; build one with `despina train-detector DATASET "
                f"--backgrounds DIR --out {folder}`"
            )
        return
    raise ConfigError(f"unknown extractor {spec!r}; use whole, contours, cascade:NAME or learned")
