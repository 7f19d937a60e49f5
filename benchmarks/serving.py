"""The prediction endpoint under load: requests per second and p50/p99 latency at
concurrency 1, 8 and 32, measured with ``wrk`` on loopback, side by side with the bare
in-process cost (decode + preprocess + ONNX Runtime) and a plain FastAPI endpoint without
batching, in one run.

    python benchmarks/serving.py --data ../shared/data/fashion-mnist

Three models: the small CNN a Fashion-MNIST ``train`` job writes (28 px, the default
model size); a ResNet-18-sized CNN (widths 64-512, 8 conv layers, 32 px RGB as for
CIFAR; untrained, its speed is what is measured) whose per-image cost falls with batch
size, for dynamic batching on versus off; and the same CNN at the width whose bare cost on
the machine at hand is the issue's reference cost (2.4 ms per image; ``--reference-ms``),
found by bisection before it is measured: a fixed width is a different cost on every CPU
(width 40 cost 2.3 ms on 2026-12-03's machine and 0.9 ms on an AVX-512 one). Each sized
model is also served by the plain FastAPI endpoint, the issue's yardstick. Needs ``wrk``
(Debian: apt install wrk).
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import cv2
import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import table

BOUNDARY = "despinabench"
BIG = 32  # input side of the ResNet-18-sized model
COLUMNS = (
    "concurrency",
    "req/s",
    "p50 ms",
    "p99 ms",
    "p50 / bare",
    "req/s / two-core bare",
    "p99 / p50",
    "non-2xx",
)
PLAIN_APP = """
import cv2, numpy as np, onnxruntime as ort
from fastapi import FastAPI, File, UploadFile
from despina.preprocessing.image import ImagePipeline

MODEL = {model!r}
opts = ort.SessionOptions()
opts.intra_op_num_threads = 1
session = ort.InferenceSession(MODEL + "/model.onnx", opts, providers=["CPUExecutionProvider"])
pipeline = ImagePipeline.load(__import__("pathlib").Path(MODEL) / "preprocessing.json")
app = FastAPI()

@app.get("/health")
def health():
    return {{"status": "ok"}}

@app.post("/predict")
def predict(file: UploadFile = File(...)):
    data = file.file.read()
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    x = pipeline.transform([cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)])
    logits = session.run(None, {{"x": x}})[0][0]
    return {{"label": int(logits.argmax()), "score": float(logits.max())}}
"""


def despina_serve(model: Path, *args: str) -> list[str]:
    """The command of ``despina serve`` for ``model`` with ``args``; ``{port}`` stands for
    the port."""
    cli = str(Path(sys.executable).parent / "despina")
    return [cli, "serve", str(model), "--port", "{port}", *args]


def plain_fastapi(model: Path, folder: Path) -> list[str]:
    """The command of the plain FastAPI endpoint for ``model`` (its app written to
    ``folder``); ``{port}`` stands for the port."""
    (folder / "plain_app.py").write_text(PLAIN_APP.format(model=str(model)))
    argv = [sys.executable, "-m", "uvicorn", "--app-dir", str(folder), "plain_app:app"]
    return [
        *argv,
        "--host",
        "127.0.0.1",
        "--port",
        "{port}",
        "--log-level",
        "warning",
        "--no-access-log",
    ]


def multipart(image: bytes, path: Path) -> Path:
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="x.png"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode()
    path.write_bytes(head + image + f"\r\n--{BOUNDARY}--\r\n".encode())
    return path


def lua(body: Path, path: Path) -> Path:
    path.write_text(
        textwrap.dedent(
            f"""
            wrk.method = "POST"
            local f = io.open("{body}", "rb")
            wrk.body = f:read("*all")
            f:close()
            wrk.headers["Content-Type"] = "multipart/form-data; boundary={BOUNDARY}"
            wrk.headers["Authorization"] = "Bearer {TOKEN}"
            """
        )
    )
    return path


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk(url: str, script: Path, connections: int, seconds: int) -> dict[str, float]:
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{seconds}s",
            "--timeout",
            "30s",
            "--latency",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    dist = dict(re.findall(r"^\s+(50|99)%\s+(\S+)\s*$", out, re.M))
    if "99" not in dist:
        raise RuntimeError(f"cannot read wrk's output:\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    done = re.search(r"(\d+) requests in", out)
    return {
        "rps": rps,
        "requests": int(done.group(1)) if done else 0,
        "p50": _ms(dist["50"]),
        "p99": _ms(dist["99"]),
        "errors": int(bad.group(1)) if bad else 0,
    }


# Despina's endpoints check a token on every request (the plain FastAPI app checks none):
# each server bootstraps this one as its admin token, in a store of its own.
TOKEN = "dsp_" + secrets.token_urlsafe(32)


class Server:
    """A server process on a free loopback port, stopped on exit."""

    def __init__(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        argv = [a.replace("{port}", str(self.port)) for a in argv]
        self.home = tempfile.mkdtemp(prefix="despina-bench-home-")
        auth = {"DESPINA_HOME": self.home, "DESPINA_ADMIN_TOKEN": TOKEN}
        self.proc = subprocess.Popen(
            argv,
            env={**os.environ, **auth, **(env or {})},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError(f"server {argv} did not start")

    def cpu_seconds(self) -> float:
        """CPU time used so far by the server's processes (its session: the parent and
        any worker processes), from /proc; Linux only."""
        tick = os.sysconf("SC_CLK_TCK")
        total = 0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:  # a process that ended meanwhile
                continue
            if int(fields[3]) == self.proc.pid:  # the session id (start_new_session)
                total += int(fields[11]) + int(fields[12])  # utime + stime
        return total / tick

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *_: object) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait(30)
        shutil.rmtree(self.home, ignore_errors=True)


T = TypeVar("T")


def loaded(
    server: Server, url: str, script: Path, connections: int, seconds: int
) -> dict[str, float]:
    """``wrk``'s figures, with the server's CPU milliseconds per answered request
    (``core_ms``: all its processes, from /proc over the run)."""
    cpu = server.cpu_seconds()
    r = wrk(url, script, connections, seconds)
    r["core_ms"] = (server.cpu_seconds() - cpu) * 1000 / max(1, r["requests"])
    return r


def bare_around(
    model: Path, image: bytes, measure: Callable[..., T], *args: Any
) -> tuple[T, float]:
    """``measure(*args)``, and the bare cost (seconds per image) timed just before and just
    after it, averaged: this machine's speed drifts by tens of percent within minutes,
    and a ratio to a bare cost timed minutes earlier drifts with it."""
    before = bare(model, image, 2.0)
    out = measure(*args)
    return out, (before + bare(model, image, 2.0)) / 2


def ort_session(model: Path, threads: int, spinning: bool | None = None) -> Any:
    """An ONNX Runtime session of the folder's model on ``threads`` threads; ``spinning``
    None keeps ONNX Runtime's default (idle threads spin)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    if spinning is not None:
        opts.inter_op_num_threads = 1
        opts.add_session_config_entry("session.intra_op.allow_spinning", str(int(spinning)))
    return ort.InferenceSession(str(model / "model.onnx"), opts, providers=["CPUExecutionProvider"])


def bare(model: Path, image: bytes, seconds: float = 4.0) -> float:
    """Seconds per image for decode + preprocess + ONNX Runtime on one thread."""
    from despina.preprocessing.image import ImagePipeline

    session = ort_session(model, 1)
    pipeline = ImagePipeline.load(model / "preprocessing.json")
    buf = np.frombuffer(image, np.uint8)

    def once() -> None:
        bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR)
        x = pipeline.transform([cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)])
        session.run(None, {"x": x})

    for _ in range(50):
        once()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        once()
        n += 1
    return (time.perf_counter() - t0) / n


def despina_in_process(model: Path, image: bytes, seconds: float = 4.0) -> tuple[float, float]:
    """Seconds per image for Despina's whole per-upload work (decode, checks, model,
    neighbours, answer) without HTTP: called directly, and through ``Deployment.predict``
    one request at a time, which adds the hand-offs to the thread pool and back."""
    import asyncio

    from despina.serving.deployment import Deployment
    from despina.serving.settings import ServingSettings

    def direct() -> None:
        prep = dep.prepare(image)
        dep._answer(prep, dep._infer_rows(prep.rows))

    async def through_predict(n: int) -> None:
        for _ in range(n):
            await dep.predict(image)

    def timed(run: Callable[[int], None]) -> float:
        run(50)
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            run(100)
            n += 100
        return (time.perf_counter() - t0) / n

    dep = Deployment("bench", model, "whole", ServingSettings(threads=1))
    try:
        sync = timed(lambda n: [direct() for _ in range(n)] and None)
        hand_offs = timed(lambda n: asyncio.run(through_predict(n)))
        return sync, hand_offs
    finally:
        dep.close()


def batch_curve(
    model: Path, sizes: tuple[int, ...] = (1, 4, 8, 16, 32), threads: int = 2
) -> dict[int, float]:
    """Milliseconds per image of the bare model call at each batch size."""
    session = ort_session(model, threads)
    shape = session.get_inputs()[0].shape[1:]
    out = {}
    for b in sizes:
        x = np.random.default_rng(0).random((b, *shape), dtype=np.float32)
        session.run(None, {"x": x})
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < 1.5:
            session.run(None, {"x": x})
            n += 1
        out[b] = round((time.perf_counter() - t0) / n / b * 1000, 2)
    return out


def lone_call(model: Path, rounds: int = 5) -> dict[str, float]:
    """Milliseconds per one-image call on one thread, and on two threads whose idle
    thread sleeps or spins (the median of alternating rounds): what a lone request's
    session (``lone_spinning``) is chosen by."""
    sessions = {
        "1 thread": ort_session(model, 1, spinning=False),
        "2 threads, sleeping": ort_session(model, 2, spinning=False),
        "2 threads, spinning": ort_session(model, 2, spinning=True),
    }
    x = np.zeros((1, *sessions["1 thread"].get_inputs()[0].shape[1:]), np.float32)
    times: dict[str, list[float]] = {k: [] for k in sessions}
    for _ in range(rounds):
        for key, s in sessions.items():
            for _ in range(20):
                s.run(None, {"x": x})
            t0 = time.perf_counter()
            for _ in range(200):
                s.run(None, {"x": x})
            times[key].append((time.perf_counter() - t0) / 200 * 1000)
    return {k: round(float(np.median(v)), 2) for k, v in times.items()}


def sized_cnn(folder: Path, width: int = 64) -> Path:
    """A model folder with an untrained 8-conv CNN of widths ``width`` to ``8 * width``
    (64: ResNet-18-sized) on 32 px RGB, built by Despina's own code."""
    import torch
    from skimage import data as photos

    from despina.audit.image_stats import compute_features
    from despina.data.decode import as_rgb
    from despina.jobs.serving_artifacts import write_serving_artifacts
    from despina.models.cnn import SmallCNN
    from despina.models.store import save_model
    from despina.preprocessing.image import ImagePipeline

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    sources = [as_rgb(getattr(photos, n)()) for n in ("astronaut", "coffee", "chelsea", "rocket")]
    crops = []
    for _ in range(400):
        src = sources[int(rng.integers(len(sources)))]
        y, x = rng.integers(0, src.shape[0] - BIG), rng.integers(0, src.shape[1] - BIG)
        crops.append(np.ascontiguousarray(src[y : y + BIG, x : x + BIG]))
    model = SmallCNN(3, 10, width=width, depth=4, dropout=0.0).eval()
    pipeline = ImagePipeline(BIG, "resize", "rgb").fit(np.stack(crops))
    names = [f"class{i}" for i in range(10)]
    config = {"in_channels": 3, "width": width, "depth": 4, "dropout": 0.0}
    save_model(model, folder, names, config)
    pipeline.save(folder / "preprocessing.json")
    write_serving_artifacts(
        model,
        folder,
        pipeline.transform(crops),
        np.arange(len(crops)) % 10,
        [f"crop{i}" for i in range(len(crops))],
        np.stack([compute_features(c).stats for c in crops]),
        validation_fraction=0.1,
        seed=0,
    )
    return folder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, help="the Fashion-MNIST IDX folder (the small model)")
    ap.add_argument("--model", type=Path, help="a small-CNN model folder (default: train one)")
    ap.add_argument("--seconds", type=int, default=8, help="wrk duration per cell")
    ap.add_argument("--skip-big", action="store_true", help="skip the sized models")
    ap.add_argument("--endpoints", default="", help="only small-model endpoints matching")
    ap.add_argument("--skip-small", action="store_true", help="only the sized models")
    ap.add_argument("--sized", default="", help="only sized models whose label matches")
    ap.add_argument(
        "--reference-ms",
        type=float,
        default=REFERENCE_COST * 1000,
        help="bare cost of the reference-cost model (the issue's: 2.4 ms per image)",
    )
    ap.add_argument(
        "--reference-width", type=int, help="that model's width (default: found by bisection)"
    )
    args = ap.parse_args()
    if args.data is None and not args.skip_small:
        ap.error("--data is required for the small model (or pass --skip-small)")
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt install wrk")
    from despina.data.sources import fashion_mnist_arrays

    with tempfile.TemporaryDirectory() as tmp_text:
        tmp = Path(tmp_text)
        if args.skip_small:  # nothing of the small model: no training, no bare timing
            sized_sections(args, tmp)
            return
        model = args.model
        if model is None:
            from despina.core.config import TrainConfig
            from despina.jobs.batch import TrainJobConfig, train_model

            source = f"fashion-mnist:{args.data}?split=train&limit=5000"
            train_model(source, tmp, TrainJobConfig(train=TrainConfig(epochs=3)))
            model = tmp / "model"
        images, _ = fashion_mnist_arrays(args.data, "test")
        image = cv2.imencode(".png", images[0])[1].tobytes()
        script = lua(multipart(image, tmp / "body.bin"), tmp / "post.lua")

        t_bare = bare(model, image)
        t_full, t_predict = despina_in_process(model, image)
        two_core = 2 / t_bare
        print(
            f"small CNN, 28 px PNG: bare {t_bare * 1000:.2f} ms/image ({1 / t_bare:.0f} img/s "
            f"on one core; two-core bare rate {two_core:.0f}); Despina's whole pipeline "
            f"in-process {t_full * 1000:.2f} ms/image, through Deployment.predict (thread "
            f"hand-offs) {t_predict * 1000:.2f} ms/image",
            flush=True,
        )
        uvicorn = plain_fastapi(model, tmp)
        endpoints = {
            "plain FastAPI, 1 worker": (uvicorn, "/predict", {}),
            "plain FastAPI, 2 workers": ([*uvicorn, "--workers", "2"], "/predict", {}),
            "despina serve": (
                despina_serve(model),
                "/v1/deployments/{name}/predict",
                {},
            ),
            "despina serve, 2 workers": (
                despina_serve(model, "--workers", "2"),
                "/v1/deployments/{name}/predict",
                {},
            ),
            "despina serve, auth off": (
                despina_serve(model),
                "/v1/deployments/{name}/predict",
                {"DESPINA_AUTH": "off"},
            ),
            "despina serve, batching off": (
                despina_serve(model, "--batch", "1"),
                "/v1/deployments/{name}/predict",
                {},
            ),
        }
        name = model.resolve().parent.name if model.name == "model" else model.name
        name = re.sub(r"[^a-z0-9_.-]", "-", name.lower()).lstrip("-._") or "model"
        endpoints = {k: v for k, v in endpoints.items() if re.search(args.endpoints, k)}
        rows = []
        for label, (argv, path, env) in endpoints.items():
            with Server(argv, env) as server:
                url = f"http://127.0.0.1:{server.port}{path.format(name=name)}"
                for c in (1, 8, 32):
                    r = wrk(url, script, c, args.seconds)
                    rows.append(
                        [
                            label,
                            c,
                            round(r["rps"]),
                            round(r["p50"], 2),
                            round(r["p99"], 2),
                            round(r["p50"] / (t_bare * 1000), 2),
                            round(r["rps"] / two_core, 2),
                            round(r["p99"] / r["p50"], 2),
                            r["errors"],
                        ]
                    )
                    print(rows[-1], flush=True)
        print()
        print(table(["endpoint", *COLUMNS], rows))
        if not args.skip_big:
            sized_sections(args, tmp)


def upload_png() -> bytes:
    """The sized models' upload in every script: a 32 px PNG of seeded noise."""
    pixels = np.random.default_rng(0).integers(0, 255, (BIG, BIG, 3), np.uint8)
    return cv2.imencode(".png", pixels)[1].tobytes()


#: The bare cost per image of the issue's reference CNN, in seconds.
REFERENCE_COST = 2.4e-3
#: ``--width``'s help in the scripts that default to the reference cost.
WIDTH_HELP = "first-block width of the CNN (default: the issue's reference cost, 2.4 ms)"


def sized_setup(
    tmp: Path, name: str, width: int | None = None, cost: float = REFERENCE_COST
) -> tuple[int, Path, bytes, Path]:
    """A sized CNN's width (None: the width whose bare cost is ``cost`` on this machine,
    see width_for_cost), its folder (deployed as ``name``), its upload, and wrk's script
    that posts it."""
    width = width or width_for_cost(tmp / "calibration", cost)
    model = sized_cnn(tmp / name / "model", width)
    photo = upload_png()
    script = lua(multipart(photo, tmp / f"{name}.bin"), tmp / f"{name}.lua")
    return width, model, photo, script


def sized_sections(args: argparse.Namespace, tmp: Path) -> None:
    """The sized models whose label matches ``--sized``."""
    for label in ("ResNet-18-sized", "reference-cost"):
        if not re.search(args.sized, label):
            continue
        width = 64 if label == "ResNet-18-sized" else args.reference_width
        sized_section(label, width, tmp, args.seconds, args.reference_ms / 1000)


def width_for_cost(
    tmp: Path, seconds: float = REFERENCE_COST, low: int = 8, high: int = 128
) -> int:
    """The width of the sized CNN whose bare cost per image is nearest ``seconds`` on this
    machine (bisection; the cost grows with the width). Takes about half a minute."""
    photo = upload_png()
    costs: dict[int, float] = {}

    def cost(width: int) -> float:
        if width not in costs:
            model = sized_cnn(tmp / f"w{width}", width)
            costs[width] = bare(model, photo, 1.5)
            print(f"  width {width}: bare {costs[width] * 1000:.2f} ms/image", flush=True)
        return costs[width]

    print(f"finding the width whose bare cost is {seconds * 1000:.2f} ms/image:", flush=True)
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if cost(mid) < seconds else (low, mid)
    best = min((low, high), key=lambda w: abs(cost(w) - seconds))
    shutil.rmtree(tmp, ignore_errors=True)
    return best


def sized_section(
    label: str, width: int | None, tmp: Path, seconds: int, cost: float = REFERENCE_COST
) -> None:
    """Batching on and off, one and two processes, at concurrency 1 and 32, for an
    untrained CNN of the given width, or of the bare cost ``cost`` (its speed is what is
    measured)."""
    folder = label.lower()
    width, model, photo, script = sized_setup(tmp, folder, width, cost)
    t_model = bare(model, photo, 6.0)
    print(
        f"\n{label} CNN (width {width}), {BIG} px: bare {t_model * 1000:.2f} ms/image on one core"
    )
    t_full, t_predict = despina_in_process(model, photo)
    print(
        f"Despina's whole pipeline in-process {t_full * 1000:.2f} ms/image, through "
        f"Deployment.predict (thread hand-offs) {t_predict * 1000:.2f} ms/image"
    )
    print("ONNX Runtime alone, 2 threads, ms per image by batch size:", batch_curve(model))
    # What each process of `--workers 2 --threads 1` runs.
    one_thread = batch_curve(model, threads=1)
    print("ONNX Runtime alone, 1 thread, ms per image by batch size:", one_thread)
    print("ONNX Runtime alone, one image, ms per call:", lone_call(model))
    rows = []
    plain = plain_fastapi(model, tmp / folder)
    served = f"/v1/deployments/{folder}/predict"
    endpoints = (  # (name, command, path)
        # The yardstick on the same model: no batching, no checks, no token.
        ("plain FastAPI, 1 worker", plain, "/predict"),
        ("plain FastAPI, 2 workers", [*plain, "--workers", "2"], "/predict"),
        ("batching on (max 32)", despina_serve(model, "--threads", "2"), served),
        ("batching off", despina_serve(model, "--threads", "2", "--batch", "1"), served),
        # Two processes with one model thread each: Python's per-request work in one
        # process no longer waits for the other's model call.
        (
            "batching on, 2 workers x 1 thread",
            despina_serve(model, "--threads", "1", "--workers", "2"),
            served,
        ),
        # One process, two model calls at once, one thread each (max batch 8).
        (
            "batching on (max 8), 2 model workers x 1 thread",
            despina_serve(model, "--threads", "1", "--model-workers", "2", "--batch", "8"),
            served,
        ),
    )
    for name, argv, path in endpoints:
        with Server(argv) as server:
            url = f"http://127.0.0.1:{server.port}{path}"
            for c in (1, 32):
                r, near = bare_around(model, photo, loaded, server, url, script, c, seconds + 4)
                rows.append(
                    [
                        name,
                        c,
                        round(near * 1000, 2),
                        round(r["rps"], 1),
                        round(r["p50"], 2),
                        round(r["p99"], 1),
                        round(r["p50"] / (near * 1000), 2),
                        round(r["rps"] * near / 2, 2),
                        round(r["p99"] / r["p50"], 2),
                        round(r["core_ms"], 2),
                        r["errors"],
                    ]
                )
                print(rows[-1], flush=True)
    on = next(r[3] for r in rows if r[0].startswith("batching on") and r[1] == 32)
    off = next(r[3] for r in rows if r[0] == "batching off" and r[1] == 32)
    print()
    columns = [COLUMNS[0], "bare ms", *COLUMNS[1:-1], "server core-ms / request", COLUMNS[-1]]
    print(table([f"{label} endpoint", *columns], rows))
    print(f"\ndynamic batching at concurrency 32: {on / off:.2f}x the same endpoint without")


if __name__ == "__main__":
    main()
