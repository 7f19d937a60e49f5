"""A small real model folder (digits, trained once per session) and a served deployment."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from despina.control.store import Store
from despina.core.config import TrainConfig
from despina.data.sources import digits_arrays
from despina.jobs.batch import TrainJobConfig, train_model
from despina.serving.api import create_app
from despina.serving.auth import Authenticator
from despina.serving.host import DeploymentHost
from despina.serving.settings import ServingSettings
from tests.control.fixtures import ACTIVITY_KEY, ThreadServer, admin_token


@pytest.fixture(scope="session")
def digits_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("digits-model")
    cfg = TrainJobConfig(image_size=8, train=TrainConfig(epochs=15), seed=0)
    train_model("builtin:digits", out, cfg)
    return out / "model"


@pytest.fixture
def home_model(digits_model: Path, home: Path) -> Path:
    """The digits model copied under the test's home (the allowed root of deployments)."""
    return Path(shutil.copytree(digits_model, home / "models" / "digits" / "model"))


def png(image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", image)
    assert ok
    return buf.tobytes()


@pytest.fixture(scope="session")
def digit_pngs() -> list[tuple[bytes, str]]:
    """Every 9th scikit-learn digit as PNG bytes with its label."""
    images, labels = digits_arrays()
    return [(png(images[i]), str(labels[i])) for i in range(0, len(images), 9)]


def serving_app(host: DeploymentHost, folder: Path, **kw: Any) -> tuple[Any, str]:
    """``despina serve``'s app around ``host``, with tokens in a store under ``folder``;
    returns the app and an admin token."""
    store = Store(f"sqlite:///{folder}/despina.db", activity_key=ACTIVITY_KEY)
    token = admin_token(store)
    return create_app(None, host=host, auth=Authenticator(store), **kw), token


@pytest.fixture(scope="module")
def digits_server(
    digits_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ThreadServer]:
    """``despina serve``'s app on a loopback port with the digits model as ``digits``."""
    settings = ServingSettings(threads=1, max_upload_bytes=2 * 2**20)
    host = DeploymentHost(settings)
    host.add("digits", str(digits_model))
    app, token = serving_app(host, tmp_path_factory.mktemp("auth"), serving=settings)
    server = ThreadServer(app=app, token=token)
    server.client = server.http(timeout=60)  # type: ignore[attr-defined]
    yield server
    server.client.close()  # type: ignore[attr-defined]
    server.stop()
