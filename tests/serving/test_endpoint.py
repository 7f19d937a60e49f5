"""The prediction endpoint on a real loopback server: answers, and every kind of bad input."""

from __future__ import annotations

import socket
import struct
import zlib
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest

from tests.control.fixtures import ThreadServer, wait_for
from tests.serving.fixtures import png, serving_app

PREDICT = "/v1/deployments/digits/predict"


def _post(server: ThreadServer, data: bytes, name: str = "x.png") -> httpx.Response:
    return server.client.post(PREDICT, files={"file": (name, data, "image/png")})


def _still_up(server: ThreadServer, digit_pngs: list[tuple[bytes, str]]) -> None:
    r = _post(server, digit_pngs[0][0])
    assert r.status_code == 200, r.text


def test_predict_answers_labels_flags_and_timings(
    digits_server: ThreadServer, digit_pngs: list[tuple[bytes, str]]
) -> None:
    right = 0
    for data, label in digit_pngs:
        r = _post(digits_server, data)
        assert r.status_code == 200, r.text
        body = r.json()
        [obj] = body["objects"]
        right += obj["label"] == label
        assert obj["box"] == [0, 0, 8, 8]
    assert right / len(digit_pngs) >= 0.9  # a CNN on the images it learned from
    assert set(body["image"]) >= {"width", "height", "flags", "out_of_distribution", "nearest"}
    assert set(body["image"]["flags"]) == {
        "blurry",
        "dark",
        "overexposed",
        "low_information",
        "out_of_distribution",
    }
    assert 0 <= body["image"]["out_of_distribution"]["score"] <= 1
    assert body["image"]["nearest"]["id"].startswith("digits/")
    assert set(body["timings_ms"]) >= {"decode", "preprocess", "extract", "classify"}
    assert body["model"]["name"] == "model" and len(body["model"]["version"]) == 12
    assert (len(obj["top_k"]) == 3 and obj["top_k"][0]["label"] == obj["label"]) or obj[
        "out_of_distribution"
    ]
    assert r.headers["x-request-id"] == body["request_id"]


def test_training_images_are_rarely_flagged(
    digits_server: ThreadServer, digit_pngs: list[tuple[bytes, str]]
) -> None:
    flagged = sum(
        any(_post(digits_server, data).json()["image"]["flags"].values())
        for data, _ in digit_pngs[:100]
    )
    assert flagged <= 10


def test_a_dark_blurry_or_foreign_image_is_flagged(digits_server: ThreadServer) -> None:
    dark = _post(digits_server, png(np.full((8, 8), 3, np.uint8))).json()["image"]["flags"]
    assert dark["dark"] or dark["low_information"]
    from skimage import data

    for photo in (data.astronaut(), data.coffee()):  # nothing like a handwritten digit
        foreign = _post(digits_server, png(photo[:, :, ::-1])).json()
        assert foreign["image"]["out_of_distribution"]["flag"], foreign["image"]
        assert foreign["objects"][0]["label"] == "unknown"


def test_junk_is_unknown_with_the_out_of_distribution_score_as_confidence(
    digits_server: ThreadServer, digit_pngs: list[tuple[bytes, str]]
) -> None:
    """Noise, black, white and solid colours are nothing the digits model saw, at its
    size and larger; the digits themselves pass."""
    rng = np.random.default_rng(0)
    junk = [
        rng.integers(0, 256, (8, 8), np.uint8),
        rng.integers(0, 256, (64, 64, 3), np.uint8),
        np.clip(rng.normal(128, 50, (256, 256)), 0, 255).astype(np.uint8),
        np.zeros((32, 32), np.uint8),
        np.full((32, 32), 255, np.uint8),
        np.full((16, 16, 3), (0, 0, 255), np.uint8),
    ]
    for image in junk:
        body = _post(digits_server, png(image)).json()
        assert body["image"]["out_of_distribution"]["flag"], (image.shape, body["image"])
        (obj,) = body["objects"]
        assert obj["label"] == "unknown" and obj["confidence"] == obj["ood_score"] >= 0.5
    passed = [
        not _post(digits_server, data).json()["image"]["out_of_distribution"]["flag"]
        for data, _ in digit_pngs[:100]
    ]
    assert sum(passed) >= 95


def test_predict_batch_answers_each_file(
    digits_server: ThreadServer, digit_pngs: list[tuple[bytes, str]]
) -> None:
    files = [("files", (f"{i}.png", d, "image/png")) for i, (d, _) in enumerate(digit_pngs[:5])]
    files.append(("files", ("bad.png", b"not an image", "image/png")))
    r = digits_server.client.post("/v1/deployments/digits/predict-batch", files=files)
    assert r.status_code == 200
    results = r.json()["results"]
    assert [x["file"] for x in results] == [f"{i}.png" for i in range(5)] + ["bad.png"]
    assert all("objects" in x for x in results[:5])
    assert results[5]["status"] == 422 and "not a readable image" in results[5]["detail"]


def _huge_png(width: int, height: int) -> bytes:
    """A valid, well-compressed PNG of a black image of any size, without building it."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    comp = zlib.compressobj(9)
    row = b"\x00" * (width + 1)
    idat = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.mark.parametrize(
    ("case", "status", "words"),
    [
        ("not-an-image", 422, "not a readable image"),
        ("truncated-jpeg", 422, "truncated"),
        ("empty", 422, "empty"),
        ("20000x20000", 422, "pixel"),
    ],
)
def test_bad_uploads_get_clear_errors_and_the_server_stays_up(
    digits_server: ThreadServer,
    digit_pngs: list[tuple[bytes, str]],
    case: str,
    status: int,
    words: str,
) -> None:
    if case == "not-an-image":
        data = b"hello, this is text"
    elif case == "truncated-jpeg":
        _, buf = cv2.imencode(".jpg", np.full((64, 64, 3), 128, np.uint8))
        data = buf.tobytes()[: len(buf) // 2]
    elif case == "empty":
        data = b""
    else:
        data = _huge_png(20000, 20000)
    r = _post(digits_server, data)
    assert r.status_code == status, r.text
    assert words in r.json()["detail"].lower()
    _still_up(digits_server, digit_pngs)


def test_large_uploads_share_a_pixel_budget_and_small_ones_do_not_wait(
    digits_model: Path, digit_pngs: list[tuple[bytes, str]], tmp_path: Path
) -> None:
    """Eight 9-megapixel uploads at once on a budget of one: each decodes alone or gets
    503 with Retry-After, and a small upload sent meanwhile is answered."""
    from concurrent.futures import ThreadPoolExecutor

    from despina.serving.host import DeploymentHost
    from despina.serving.settings import ServingSettings

    settings = ServingSettings(threads=1, decode_budget_pixels=9_000_000, decode_wait_s=0)
    host = DeploymentHost(settings)
    host.add("digits", str(digits_model))
    app, token = serving_app(host, tmp_path, serving=settings)
    server = ThreadServer(app=app, token=token)
    server.client = server.http(timeout=120)  # type: ignore[attr-defined]
    big = _huge_png(3000, 3000)
    try:
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda _: _post(server, big), range(8)))
            small = _post(server, digit_pngs[0][0])
        codes = sorted(r.status_code for r in answers)
        assert set(codes) <= {200, 503} and 200 in codes and 503 in codes, codes
        busy = next(r for r in answers if r.status_code == 503)
        assert busy.headers["retry-after"] and "DESPINA_DECODE_BUDGET_PIXELS" in busy.text
        assert small.status_code == 200, small.text
        assert host.budget.peak == 9_000_000 and host.budget.used == 0
    finally:
        server.client.close()  # type: ignore[attr-defined]
        server.stop()


def test_wrong_field_content_type_and_deployment(
    digits_server: ThreadServer, digit_pngs: list[tuple[bytes, str]]
) -> None:
    data = digit_pngs[0][0]
    r = digits_server.client.post(PREDICT, files={"image": ("x.png", data, "image/png")})
    assert r.status_code == 422 and "no file field named 'file'" in r.json()["detail"]
    r = digits_server.client.post(PREDICT, content=data, headers={"content-type": "image/png"})
    assert r.status_code == 415 and "multipart/form-data" in r.json()["detail"]
    r = digits_server.client.post("/v1/deployments/nope/predict", files={"file": ("x.png", data)})
    assert r.status_code == 404 and "no deployment named 'nope'" in r.json()["detail"]
    _still_up(digits_server, digit_pngs)


def test_a_50_mb_upload_is_refused_before_it_is_read(
    digits_server: ThreadServer, digit_pngs: list[tuple[bytes, str]]
) -> None:
    # Declare 50 MB and send none of it: the 413 must come back without the server
    # waiting for (or buffering) the body.
    host, port = digits_server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            (
                f"POST {PREDICT} HTTP/1.1\r\nHost: x\r\n"
                "Content-Type: multipart/form-data; boundary=b\r\n"
                f"Authorization: Bearer {digits_server.token}\r\n"
                f"Content-Length: {50 * 2**20}\r\n\r\n"
            ).encode()
        )
        reply = sock.recv(4096).decode()
    assert reply.startswith("HTTP/1.1 413"), reply
    assert "limit" in reply
    # And a real 50 MB body, streamed, is refused too.
    big = b"\0" * (50 * 2**20)
    r = digits_server.client.post(PREDICT, files={"file": ("big.png", big)}, timeout=60)
    assert r.status_code == 413
    _still_up(digits_server, digit_pngs)


def test_chunked_uploads_are_counted_as_they_stream(
    digits_server: ThreadServer, digit_pngs: list[tuple[bytes, str]]
) -> None:
    def body() -> object:
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\n'
        for _ in range(40):
            yield b"\0" * 2**16  # 2.5 MiB in all, past the fixture's 2 MiB limit

    r = digits_server.client.post(
        PREDICT,
        content=body(),  # type: ignore[arg-type]
        headers={"content-type": "multipart/form-data; boundary=b"},
    )
    assert r.status_code == 413
    _still_up(digits_server, digit_pngs)


def test_health_ready_metrics_and_deployment_list(
    digits_server: ThreadServer, digit_pngs: list[tuple[bytes, str]], digits_model: Path
) -> None:
    _post(digits_server, digit_pngs[0][0])
    assert digits_server.client.get("/health").json()["status"] == "ok"
    ready = digits_server.client.get("/ready")
    assert ready.status_code == 200 and ready.json()["ready"]
    [dep] = digits_server.client.get("/v1/deployments").json()
    assert dep["name"] == "digits" and dep["extractor"] == "whole"
    assert dep["state"] == "running" and dep["model"] == str(digits_model.resolve())
    text = digits_server.client.get("/metrics").text
    for name in (
        "despina_request_latency_seconds_bucket",
        "despina_batch_size_bucket",
        "despina_request_queue_depth",
        "despina_predictions_total",
    ):
        assert name in text
    assert 'despina_predictions_total{deployment="digits",status="200"}' in text


def test_drift_reports_stable_then_drifted(digits_model: Path, tmp_path: Path) -> None:
    from despina.data.sources import digits_arrays
    from despina.serving.host import DeploymentHost
    from despina.serving.settings import ServingSettings

    host = DeploymentHost(ServingSettings(threads=1))
    host.add("d", str(digits_model))
    app, token = serving_app(host, tmp_path)
    server = ThreadServer(app=app, token=token)
    images, _ = digits_arrays()
    try:
        with server.http() as client:
            url = "/v1/deployments/d"
            assert client.get(url + "/drift").json()["features"]["brightness"]["psi"] is None
            for img in images[:100]:
                client.post(url + "/predict", files={"file": ("a.png", png(img))})
            report = client.get(url + "/drift").json()
            assert not report["drifted"], report
            for img in images[:100]:  # the same digits, much darker: brightness drifts
                client.post(url + "/predict", files={"file": ("a.png", png(img // 4))})
            report = client.get(url + "/drift").json()
            assert report["features"]["brightness"]["status"] == "drifted"
            assert report["drifted"]
            metrics = client.get("/metrics").text
            assert 'despina_drift_psi{deployment="d",feature="brightness"}' in metrics
    finally:
        server.stop()


def test_each_request_is_logged_as_json_with_its_request_id(
    digits_server: ThreadServer, digit_pngs: list[tuple[bytes, str]]
) -> None:
    import io
    import json
    import logging

    from despina.serving.access_log import JsonFormatter

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    access = logging.getLogger("despina.access")
    access.addHandler(handler)
    old_level = access.level
    access.setLevel(logging.INFO)
    try:
        r = digits_server.client.post(  # type: ignore[attr-defined]
            PREDICT,
            files={"file": ("x.png", digit_pngs[0][0])},
            headers={"X-Request-ID": "trace-42"},
        )
        assert r.headers["x-request-id"] == "trace-42" and r.json()["request_id"] == "trace-42"
        bad = _post(digits_server, b"junk")
        # The line is written as the response ends, which may be just after the client has
        # it: wait for it.
        wait_for(lambda: bad.headers["x-request-id"] in stream.getvalue(), 5)
    finally:
        access.removeHandler(handler)
        access.setLevel(old_level)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    by_id = {line["request_id"]: line for line in lines}
    assert by_id["trace-42"]["status"] == 200 and by_id["trace-42"]["path"] == PREDICT
    assert by_id[bad.headers["x-request-id"]]["status"] == 422
