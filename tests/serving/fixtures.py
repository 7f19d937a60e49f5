"""A small real model folder (digits, trained once per session) and a served deployment."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest

from despina.core.config import TrainConfig
from despina.data.sources import digits_arrays
from despina.jobs.batch import TrainJobConfig, train_model
from despina.serving.api import create_app
from despina.serving.deployment import ServingSettings
from despina.serving.host import DeploymentHost
from tests.control.fixtures import ThreadServer


@pytest.fixture(scope="session")
def digits_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("digits-model")
    cfg = TrainJobConfig(image_size=8, train=TrainConfig(epochs=15), seed=0)
    train_model("builtin:digits", out, cfg)
    return out / "model"


def png(image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", image)
    assert ok
    return buf.tobytes()


@pytest.fixture(scope="session")
def digit_pngs() -> list[tuple[bytes, str]]:
    """Every 9th scikit-learn digit as PNG bytes with its label."""
    images, labels = digits_arrays()
    return [(png(images[i]), str(labels[i])) for i in range(0, len(images), 9)]


@pytest.fixture(scope="module")
def digits_server(digits_model: Path) -> Iterator[ThreadServer]:
    """``despina serve``'s app on a loopback port with the digits model as ``digits``."""
    settings = ServingSettings(threads=1, max_upload_bytes=2 * 2**20)
    host = DeploymentHost(settings)
    host.add("digits", str(digits_model))
    server = ThreadServer(app=create_app(None, serving=settings, host=host))
    server.client = httpx.Client(base_url=server.url, timeout=60)  # type: ignore[attr-defined]
    yield server
    server.client.close()  # type: ignore[attr-defined]
    server.stop()
