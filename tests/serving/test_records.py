"""Table and sequence models served on a real loopback server: JSON records in, predictions
and per-record flags out, behind the same tokens, metrics and drift endpoint as images."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_wine

from despina.core.config import AuditConfig, TrainConfig
from despina.jobs.sequence_audit import audit_sequences
from despina.jobs.table_audit import audit_table
from despina.serving.host import DeploymentHost
from despina.serving.settings import ServingSettings
from tests.control.fixtures import ThreadServer
from tests.serving.fixtures import serving_app

FAST = AuditConfig(folds=3, workers=1, label_rounds=1, checks=("label",),
                   train=TrainConfig(epochs=15))  # fmt: skip


@pytest.fixture(scope="module")
def wine() -> pd.DataFrame:
    frame = load_wine(as_frame=True).frame.rename(columns={"target": "cultivar"})
    frame["cultivar"] = frame["cultivar"].map({0: "barolo", 1: "grignolino", 2: "barbera"})
    return frame.assign(cellar=np.where(np.arange(len(frame)) % 2, "north", "south"))


@pytest.fixture(scope="module")
def server(
    wine: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory, digits_model: Path
) -> Iterator[ThreadServer]:
    from aeon.datasets import load_italy_power_demand

    tmp = tmp_path_factory.mktemp("records")
    wine.to_csv(tmp / "wine.csv", index=False)
    audit_table(tmp / "wine.csv", tmp / "wine-out", FAST, target="cultivar")
    x, y = load_italy_power_demand()
    series = pd.DataFrame(np.asarray(x[:300, 0]), columns=[f"t{i}" for i in range(24)])
    series.insert(0, "label", np.asarray(y[:300]).astype(str))
    series.to_csv(tmp / "italy.csv", index=False)
    audit_sequences(tmp / "italy.csv", tmp / "italy-out", FAST, target="label")
    settings = ServingSettings(threads=1)
    host = DeploymentHost(settings)
    host.add("wine", str(tmp / "wine-out" / "model"))
    host.add("italy", str(tmp / "italy-out" / "model"))
    host.add("digits", str(digits_model))
    app, token = serving_app(host, tmp_path_factory.mktemp("auth"), serving=settings)
    srv = ThreadServer(app=app, token=token)
    srv.client = srv.http(timeout=60)  # type: ignore[attr-defined]
    srv.italy = (np.asarray(x[300:400, 0]), np.asarray(y[300:400]).astype(str))  # type: ignore[attr-defined]
    yield srv
    srv.client.close()  # type: ignore[attr-defined]
    srv.stop()


def _records(frame: pd.DataFrame) -> list[dict[str, object]]:
    return frame.drop(columns="cultivar").to_dict(orient="records")  # type: ignore[return-value]


def test_table_records_get_labels_and_flags(server: ThreadServer, wine: pd.DataFrame) -> None:
    client: httpx.Client = server.client  # type: ignore[attr-defined]
    clean = _records(wine.iloc[::4])
    r = client.post("/v1/deployments/wine/predict", json={"records": clean})
    assert r.status_code == 200, r.text
    preds = r.json()["predictions"]
    right = np.mean(
        [p["label"] == t for p, t in zip(preds, wine["cultivar"].iloc[::4], strict=True)]
    )
    assert right > 0.85
    assert not any(any(p["flags"].values()) for p in preds[:10])
    odd = dict(clean[0])
    bad = [
        {**odd, "alcohol": None},
        {**odd, "magnesium": "lots"},
        {**odd, "proline": 1e7},
        {**odd, "cellar": "attic"},
        {**odd, "vintage": 1999},
    ]
    r = client.post("/v1/deployments/wine/predict", json={"records": bad})
    assert r.status_code == 200, r.text
    flags = [p["flags"] for p in r.json()["predictions"]]
    assert flags[0]["missing"] and flags[1]["type"] and flags[2]["out_of_range"]
    assert flags[3]["unseen_category"] and flags[4]["unknown_column"]
    assert r.json()["predictions"][2]["findings"] == ["out_of_range:proline"]


def test_series_get_labels_and_flags(server: ThreadServer) -> None:
    client: httpx.Client = server.client  # type: ignore[attr-defined]
    x, y = server.italy  # type: ignore[attr-defined]
    r = client.post("/v1/deployments/italy/predict", json={"series": x.tolist()})
    assert r.status_code == 200, r.text
    preds = r.json()["predictions"]
    assert np.mean([p["label"] == t for p, t in zip(preds, y, strict=True)]) > 0.8
    short = x[0, :20].tolist()
    gap = x[1].tolist()
    gap[3] = None
    r = client.post("/v1/deployments/italy/predict", json={"series": [short, gap]})
    assert r.status_code == 200, r.text
    flags = [p["flags"] for p in r.json()["predictions"]]
    assert flags[0]["length"] and flags[1]["missing"]


@pytest.mark.parametrize(
    ("name", "kw", "status", "match"),
    [
        ("wine", {"json": {"records": []}}, 422, "non-empty"),
        ("wine", {"json": {"records": [1, 2]}}, 422, "JSON object"),
        (
            "wine",
            {"content": b"{not json", "headers": {"content-type": "application/json"}},
            422,
            "not valid JSON",
        ),
        ("italy", {"json": {"series": [[[1, 2], [3, 4]]]}}, 422, "1 channel(s)"),
        ("wine", {"files": {"file": ("x.png", b"\\x89PNG", "image/png")}}, 415, "POST JSON"),
        ("digits", {"json": {"records": [{}]}}, 415, "serves an image model"),
    ],
    ids=["empty", "not objects", "bad json", "channels", "file to table", "json to images"],
)
def test_bad_requests_get_a_clear_error(
    server: ThreadServer,
    name: str,
    kw: dict,
    status: int,
    match: str,  # type: ignore[type-arg]
) -> None:
    r = server.client.post(f"/v1/deployments/{name}/predict", **kw)  # type: ignore[attr-defined]
    assert r.status_code == status and match in r.text, r.text


def test_tokens_metrics_and_drift_apply_to_records(
    server: ThreadServer, wine: pd.DataFrame
) -> None:
    anonymous = httpx.post(f"{server.url}/v1/deployments/wine/predict",
                           json={"records": _records(wine.iloc[:2])})  # fmt: skip
    assert anonymous.status_code == 401
    client: httpx.Client = server.client  # type: ignore[attr-defined]
    for _ in range(2):
        client.post("/v1/deployments/wine/predict", json={"records": _records(wine)})
    gap = {**_records(wine.iloc[:1])[0], "alcohol": None}
    assert client.post("/v1/deployments/wine/predict", json={"records": [gap]}).status_code == 200
    drift = client.get("/v1/deployments/wine/drift").json()
    assert drift["window"] >= 50 and "alcohol" in drift["features"]
    assert drift["features"]["alcohol"]["status"] == "stable"
    metrics = client.get("/metrics").text
    assert 'despina_predictions_total{deployment="wine",status="200"}' in metrics
    assert 'despina_input_flags_total{deployment="wine",flag="missing"}' in metrics
