"""What the hardening costs: the script sandbox and the serving pixel budget, each beside
the same work without it, in one run.

Sandbox: a group of no-op script tasks (one row of a Parquet file each, half a CPU each,
as in ``benchmarks/scaling.py``) on a local cluster of two workers, run sandboxed (the
default) and unconfined (``DESPINA_UNSAFE_SCRIPTS=1``), alternating, in fresh homes; and
the cost of confining one forked process on its own.

Pixel budget: ``despina serve`` with the digits model on loopback, its default budget
(twice ``DESPINA_MAX_PIXELS``) against an unbounded one (``DESPINA_DECODE_BUDGET_PIXELS``
set to 10**12, what the server did before the budget): ordinary uploads alone (requests
per second at 8 connections), then the same uploads while 8 clients send 36-megapixel
JPEGs without pause (their latency, the large uploads' outcomes, the server's peak memory).

Login flood: ``/health`` latency on ``despina server start`` while 60 wrong passwords
arrive at once, beside the same probes with no flood.

    python benchmarks/security.py [--tasks 200] [--seconds 10]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import httpx
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).parent))
from _common import table
from serving import TOKEN, Server, despina_serve

from despina.control.models import ClusterSpec, GroupSpec, Resources
from despina.control.plane import ControlPlane
from despina.control.settings import ControlSettings
from despina.control.states import TaskState
from despina.security.sandbox import Confinement, confine, runtime_paths, unavailable

NOOP = "def main(context):\n    return None\n"


def run_group(root: Path, tasks: int, unsafe: bool) -> float:
    """Seconds for ``tasks`` no-op script tasks on two workers, in a fresh home."""
    home = Path(tempfile.mkdtemp(dir=root))
    data = home / "rows.parquet"
    pq.write_table(pa.table({"i": list(range(tasks))}), data)
    (home / "noop.py").write_text(NOOP)
    os.environ["DESPINA_UNSAFE_SCRIPTS"] = "on" if unsafe else "off"
    settings = ControlSettings(
        home=home, database_url=f"sqlite:///{home / 'despina.db'}", allowed_roots=(home,)
    )
    plane = ControlPlane(settings)
    try:
        plane.create_cluster(ClusterSpec(name="c", workers=2))
        plane.create_group(
            GroupSpec(name="g", cluster="c", source=str(data), script=str(home / "noop.py"),
                      partitions=tasks, resources=Resources(cpus=0.5))
        )  # fmt: skip
        t0 = time.perf_counter()
        done = plane.start_group("g", wait=True)
        seconds = time.perf_counter() - t0
        assert all(t.state is TaskState.SUCCEEDED for t in done), "a no-op task failed"
        return seconds
    finally:
        plane.close()
        os.environ.pop("DESPINA_UNSAFE_SCRIPTS", None)


def fork_cost(rounds: int, sandboxed: bool) -> float:
    """Milliseconds to fork a child that (optionally) confines itself and exits."""
    rules = Confinement(read=runtime_paths([]), write=(tempfile.gettempdir(),))
    t0 = time.perf_counter()
    for _ in range(rounds):
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                if sandboxed:
                    confine(rules)
            except BaseException:
                code = 1
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, "confining the child failed"
    return (time.perf_counter() - t0) * 1000 / rounds


def sandbox_section(tasks: int) -> None:
    reason = unavailable()
    if reason:
        print(f"## Script sandbox\n\nnot measured: {reason}\n")
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        runs: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(2):  # alternating, so drift on the machine hits both alike
            for unsafe in (True, False):
                runs[unsafe].append(run_group(Path(tmp), tasks, unsafe))
    for unsafe, label in ((True, "unconfined (DESPINA_UNSAFE_SCRIPTS=1)"), (False, "sandboxed")):
        best = min(runs[unsafe])
        rows.append([label, tasks, best, tasks / best])
    fork_plain, fork_confined = fork_cost(200, False), fork_cost(200, True)
    print(f"## Script sandbox ({tasks} no-op script tasks, 2 workers; best of 2)\n")
    print(table(["scripts run", "tasks", "s", "tasks/s"], rows))
    print()
    print(
        table(
            ["one forked child", "ms"],
            [["fork + exit", fork_plain], ["fork + confine + exit", fork_confined]],
        )
    )
    print()


def digits_png() -> bytes:
    from despina.data.sources import digits_arrays

    return cv2.imencode(".png", digits_arrays()[0][0])[1].tobytes()


def large_jpeg() -> bytes:
    """A 36-megapixel photo-like JPEG (a camera's size; under the 20 MiB upload limit)."""
    rng = np.random.default_rng(0)
    small = rng.integers(0, 255, (60, 90, 3), np.uint8)
    big = cv2.resize(small, (7344, 4896), interpolation=cv2.INTER_CUBIC)  # 35.96 Mpx
    return cv2.imencode(".jpg", big, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()


def rss_mib(pid_session: int) -> float:
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[3]) == pid_session:
                total += int(fields[21]) * os.sysconf("SC_PAGE_SIZE")  # rss pages
        except (OSError, IndexError, ValueError):
            continue
    return total / 2**20


def serving_section(model: Path, seconds: float) -> None:
    small, big = digits_png(), large_jpeg()
    headers = {"Authorization": f"Bearer {TOKEN}"}
    rows, flood_rows = [], []
    for label, budget in (("default budget (72 Mpx)", None), ("unbounded (10**12)", 10**12)):
        env = {"DESPINA_DECODE_BUDGET_PIXELS": str(budget)} if budget else {}
        with Server(despina_serve(model), env) as server:
            url = f"http://127.0.0.1:{server.port}/v1/deployments/model/predict"
            name = httpx.get(
                f"http://127.0.0.1:{server.port}/v1/deployments", headers=headers
            ).json()[0]["name"]
            url = url.replace("/model/", f"/{name}/")
            rate, _ = hammer(url, headers, small, 8, seconds)
            rows.append([label, rate])
            flood_rows.append([label, *under_flood(server, url, headers, small, big, seconds)])
    print("## Pixel budget (despina serve, digits model, loopback)\n")
    print(table(["budget", f"ordinary uploads/s (8 connections, {seconds:g} s)"], rows))
    print()
    print(
        table(
            ["budget", "ordinary p50 ms", "p99 ms", "36 Mpx: 200", "503", "other", "peak MiB"],
            flood_rows,
        )
    )


def under_flood(
    server: Server, url: str, headers: dict[str, str], small: bytes, big: bytes, seconds: float
) -> list[float]:
    """Ordinary uploads' p50 and p99 (ms) while 8 clients send ``big`` without pause; the
    large uploads' 200s, 503s and other answers; the server's peak memory (MiB)."""
    stop = threading.Event()
    outcomes: list[int] = []
    peak = [rss_mib(server.proc.pid)]

    def flood() -> None:
        with httpx.Client(timeout=120, headers=headers) as http:
            while not stop.is_set():
                try:
                    r = http.post(url, files={"file": ("big.jpg", big, "image/jpeg")})
                    outcomes.append(r.status_code)
                except httpx.HTTPError:
                    outcomes.append(0)

    def watch() -> None:
        while not stop.is_set():
            peak.append(rss_mib(server.proc.pid))
            time.sleep(0.1)

    threads = [threading.Thread(target=flood) for _ in range(8)]
    threads.append(threading.Thread(target=watch))
    for t in threads:
        t.start()
    time.sleep(1.0)
    _, latencies = hammer(url, headers, small, 1, seconds)
    stop.set()
    for t in threads:
        t.join()
    ok = sum(1 for c in outcomes if c == 200)
    busy = sum(1 for c in outcomes if c == 503)
    p99 = float(np.percentile(latencies, 99))
    return [statistics.median(latencies), p99, ok, busy, len(outcomes) - ok - busy, max(peak)]


def hammer(
    url: str, headers: dict[str, str], body: bytes, clients: int, seconds: float
) -> tuple[float, list[float]]:
    """Requests per second and each request's latency (ms), ``clients`` at once."""
    deadline = time.monotonic() + seconds
    latencies: list[float] = []

    def client() -> None:
        with httpx.Client(timeout=60, headers=headers) as http:
            while time.monotonic() < deadline:
                t0 = time.perf_counter()
                r = http.post(url, files={"file": ("d.png", body, "image/png")})
                assert r.status_code == 200, r.text
                latencies.append((time.perf_counter() - t0) * 1000)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(lambda _: client(), range(clients)))
    return len(latencies) / (time.perf_counter() - t0), latencies


def login_flood_section(attempts: int = 60) -> None:
    """``/health`` latency while ``attempts`` wrong passwords arrive at once, on a real
    ``despina server start`` (its own process), against the same requests with no flood."""
    import asyncio
    import subprocess

    cli = str(Path(sys.executable).parent / "despina")
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "DESPINA_HOME": home, "DESPINA_ADMIN_TOKEN": TOKEN}
        subprocess.run(
            [cli, "user", "add", "ana", "--role", "viewer", "--password"],
            input="a long passphrase\na long passphrase\n",
            env=env, check=True, capture_output=True, text=True,
        )  # fmt: skip
        with Server([cli, "server", "start", "--port", "{port}"], {"DESPINA_HOME": home}) as srv:
            base = f"http://127.0.0.1:{srv.port}"

            async def measure(flood: bool) -> tuple[list[float], list[int]]:
                async with httpx.AsyncClient(base_url=base, timeout=120) as http:
                    wrong = {"user": "ana", "password": "guess", "expires": "1h"}
                    pending = None
                    if flood:
                        logins = [http.post("/v1/login", json=wrong) for _ in range(attempts)]
                        pending = asyncio.gather(*logins)
                    health = []
                    for _ in range(40):
                        t0 = time.perf_counter()
                        assert (await http.get("/health")).status_code == 200
                        health.append((time.perf_counter() - t0) * 1000)
                        await asyncio.sleep(0.05)
                    codes = [r.status_code for r in await pending] if pending else []
                    return health, codes

            quiet, _ = asyncio.run(measure(False))
            time.sleep(61)  # the failure window passes: the flood starts from zero
            loud, codes = asyncio.run(measure(True))
    rows = [
        ["no flood", statistics.median(quiet), max(quiet), ""],
        [
            f"{attempts} wrong passwords at once",
            statistics.median(loud),
            max(loud),
            f"{codes.count(401)} × 401, {codes.count(429)} × 429",
        ],
    ]
    print(f"## /health during a login flood (despina server start, {attempts} at once)\n")
    print(table(["while", "/health p50 ms", "max ms", "logins answered"], rows))
    print()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tasks", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args()
    sandbox_section(args.tasks)
    login_flood_section()
    from despina.core.config import TrainConfig
    from despina.jobs.batch import TrainJobConfig, train_model

    with tempfile.TemporaryDirectory() as tmp:
        cfg = TrainJobConfig(image_size=8, train=TrainConfig(epochs=5), seed=0)
        train_model("builtin:digits", Path(tmp), cfg)
        serving_section(Path(tmp) / "model", args.seconds)


if __name__ == "__main__":
    main()
