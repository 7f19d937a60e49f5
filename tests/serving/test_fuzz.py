"""Property test: whatever is uploaded, the endpoint answers 2xx or 4xx, never 5xx."""

from __future__ import annotations

import cv2
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.control.fixtures import ThreadServer

_SEED_IMAGES = [
    cv2.imencode(ext, np.random.default_rng(i).integers(0, 255, (h, w, 3), dtype=np.uint8))[
        1
    ].tobytes()
    for i, (ext, h, w) in enumerate([(".png", 8, 8), (".jpg", 32, 24), (".bmp", 5, 9)])
]


@st.composite
def uploads(draw: st.DrawFn) -> bytes:
    """Random bytes, or a real image with bytes flipped, cut, or appended."""
    kind = draw(st.sampled_from(["random", "flip", "truncate", "append", "image"]))
    if kind == "random":
        return draw(st.binary(min_size=0, max_size=2048))
    base = bytearray(draw(st.sampled_from(_SEED_IMAGES)))
    if kind == "flip":
        for _ in range(draw(st.integers(1, 16))):
            i = draw(st.integers(0, len(base) - 1))
            base[i] = draw(st.integers(0, 255))
    elif kind == "truncate":
        base = base[: draw(st.integers(0, len(base) - 1))]
    elif kind == "append":
        base += draw(st.binary(min_size=1, max_size=256))
    return bytes(base)


@settings(
    max_examples=1000,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    data=uploads(),
    field=st.sampled_from(["file", "file", "file", "files", "image"]),
    filename=st.text(min_size=0, max_size=40),
    ctype=st.sampled_from(["image/png", "image/jpeg", "application/octet-stream", "text/plain"]),
)
def test_no_upload_makes_the_server_fail(
    digits_server: ThreadServer, data: bytes, field: str, filename: str, ctype: str
) -> None:
    r = digits_server.client.post(  # type: ignore[attr-defined]
        "/v1/deployments/digits/predict", files={field: (filename, data, ctype)}
    )
    assert r.status_code < 500, (r.status_code, r.text)
    assert r.status_code in (200, 422), r.text
