"""Where one upload's time goes in a deployment, in process and without HTTP: each step of
``Deployment.prepare``, the model call and what ``infer`` adds to it, and the answer,
timed in alternating rounds next to the bare cost (decode + preprocess + ONNX Runtime on
one thread) of the same model and upload.

    python benchmarks/upload_cost.py            # the reference-cost CNN of serving.py
    python benchmarks/upload_cost.py --width 8  # a 0.3 ms CNN

Rounds alternate the steps, because this machine's speed drifts by tens of percent
within minutes; the table gives each step's median and range over the rounds.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import table
from serving import BIG, WIDTH_HELP, ort_session, sized_setup

BARE = "bare (decode + preprocess + model, 1 thread)"
PREPARE = "prepare, all of it"
INFER = "infer (model + neighbours + OOD)"
ANSWER = "answer (JSON-ready dict, drift)"


def steps(model: Path, upload: bytes) -> tuple[dict[str, Callable[[], Any]], Any]:
    """The timed steps, each a call with the same inputs as in a request."""
    from despina.audit.image_stats import image_statistics
    from despina.data.decode import decode_bytes
    from despina.serving.deployment import Deployment
    from despina.serving.quality import image_flags
    from despina.serving.settings import ServingSettings

    dep = Deployment("cost", model, "whole", ServingSettings(threads=1))
    image = decode_bytes(upload, "upload", 10**8).image
    stats = image_statistics(image)
    prep = dep.prepare(upload)
    results = dep._infer_rows(prep.rows)
    session = ort_session(model, 1)
    buf = np.frombuffer(upload, np.uint8)

    def bare() -> None:
        bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR)
        x = dep.model.pipeline.transform([cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)])
        session.run(None, {"x": x})

    return {
        BARE: bare,
        "decode (with the upload checks)": lambda: decode_bytes(upload, "upload", 10**8),
        "statistics (image_statistics)": lambda: image_statistics(image),
        "quality flags (image_flags)": lambda: image_flags(stats, dep.model.reference["defects"]),
        "preprocess (pipeline.transform)": lambda: dep.model.pipeline.transform([image]),
        PREPARE: lambda: dep.prepare(upload),
        "model call alone (session.run)": lambda: dep.model.session.run(None, {"x": prep.rows}),
        INFER: lambda: dep.model.infer(prep.rows),
        ANSWER: lambda: dep._answer(prep, results),
    }, dep


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--width", type=int, help=WIDTH_HELP)
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--calls", type=int, default=200, help="calls per step and round")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        args.width, model, upload, _ = sized_setup(Path(tmp), "cost", args.width)
        timed, dep = steps(model, upload)
        try:
            times: dict[str, list[float]] = {k: [] for k in timed}
            for _ in range(args.rounds):
                for name, call in timed.items():
                    for _ in range(10):
                        call()
                    t0 = time.perf_counter()
                    for _ in range(args.calls):
                        call()
                    times[name].append((time.perf_counter() - t0) / args.calls * 1e6)
        finally:
            dep.close()
    med = {name: float(np.median(v)) for name, v in times.items()}
    extra = med[PREPARE] + med[INFER] + med[ANSWER] - med[BARE]
    rows = [[name, round(med[name], 1), f"{min(v):.1f}-{max(v):.1f}"] for name, v in times.items()]
    print(f"width {args.width}, a {BIG} px PNG upload, {args.rounds} alternating rounds")
    print(table(["step", "median us", "range us"], rows))
    print(f"\nprepare + infer + answer over bare: {extra:.0f} us per upload (without HTTP)")


if __name__ == "__main__":
    main()
