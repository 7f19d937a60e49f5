"""Scaling benchmark: preprocess all 70,000 Fashion-MNIST images as a task group, against
the engines a user would otherwise reach for, in one run; then scheduling overhead.

Each engine runs ``--repeats`` times (median reported) after one pass that reads every
file into the page cache. Every engine does the same work on the same files: read a PNG,
decode it, resize to ``--size``, grayscale, normalize, and write the rows as Parquet
(``despina.jobs.batch.preprocess_records``). The images are exported once as PNG files in
class folders (``--cache``). Engine start-up (``ray.init``, a SparkSession, a
``multiprocessing.Pool``, the task group's worker processes) is outside the timings: a
task-group scheduler keeps its workers between groups, as a server does.

    pip install -e '.[bench]' torch==2.13.0
    python benchmarks/scaling.py [--limit N] [--spark-python .venv-spark/bin/python]

PySpark 4.3 needs pandas<3, which this project's environment does not have: give it its
own virtual environment (``python -m venv .venv-spark && .venv-spark/bin/pip install
'pyspark[sql]' 'pandas<3' pyarrow opencv-python-headless -e .``) and pass its python.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).parent))
import itertools

from _common import table

from despina.control.models import ClusterSpec, GroupSpec, Resources
from despina.control.plane import ControlPlane
from despina.control.scheduler import Scheduler
from despina.control.settings import ControlSettings
from despina.data.images import ImageRecord
from despina.data.sources import FASHION_MNIST_CLASSES, fashion_mnist_arrays
from despina.jobs.batch import PreprocessConfig, preprocess_records

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "fashion-mnist"


def export_pngs(folder: Path, limit: int | None) -> list[str]:
    """Fashion-MNIST train+test as PNG files in class folders (written once, then reused)."""
    done = folder / ".complete"
    if not done.exists():
        a, la = fashion_mnist_arrays(SHARED, "train")
        b, lb = fashion_mnist_arrays(SHARED, "test")
        images, labels = np.concatenate([a, b]), np.concatenate([la, lb])
        for name in FASHION_MNIST_CLASSES:
            (folder / name).mkdir(parents=True, exist_ok=True)
        for i, (img, y) in enumerate(zip(images, labels, strict=True)):
            cv2.imwrite(str(folder / FASHION_MNIST_CLASSES[int(y)] / f"{i:05d}.png"), img)
        done.write_text("ok")
    files = sorted(str(p) for p in folder.rglob("*.png"))
    return files[:limit] if limit else files


def linked(paths: list[str], folder: Path, link: Callable[[str, Path], None]) -> Path:
    """``folder`` holding a link to each of ``paths`` in its class subfolder."""
    for p in paths:
        dst = folder / Path(p).parent.name / Path(p).name
        dst.parent.mkdir(parents=True, exist_ok=True)
        link(p, dst)
    return folder


def records(paths: list[str]) -> list[ImageRecord]:
    return [ImageRecord(id=Path(p).name, path=p, label=Path(p).parent.name) for p in paths]


def work(args: tuple[list[str], str, int]) -> int:
    """One chunk through the shared preprocessing, written as one Parquet file."""
    paths, out, size = args
    cv2.setNumThreads(1)
    t = preprocess_records(records(paths), PreprocessConfig(size=size))
    pq.write_table(t, out)
    return int(t.num_rows)


def chunks(paths: list[str], n: int) -> list[list[str]]:
    cuts = np.linspace(0, len(paths), n + 1).round().astype(int)
    return [paths[a:b] for a, b in itertools.pairwise(cuts)]


def plain_loop(paths: list[str], out: Path, size: int, parts: int) -> float:
    t0 = time.perf_counter()
    n = sum(
        work((c, str(out / f"loop-{i}.parquet"), size)) for i, c in enumerate(chunks(paths, parts))
    )
    assert n == len(paths)
    return time.perf_counter() - t0


def _init_worker() -> None:
    cv2.setNumThreads(1)


def pool(paths: list[str], out: Path, size: int, workers: int, parts: int) -> float:
    ctx = mp.get_context("spawn")
    with ctx.Pool(workers, initializer=_init_worker) as p:
        p.map(int, range(workers))  # start-up outside the timing
        t0 = time.perf_counter()
        jobs = [
            (c, str(out / f"pool-{i}.parquet"), size) for i, c in enumerate(chunks(paths, parts))
        ]
        n = sum(p.map(work, jobs, chunksize=1))
        elapsed = time.perf_counter() - t0
    assert n == len(paths)
    return elapsed


def _finished(plane: ControlPlane, name: str) -> bool:
    return all(s.terminal or n == 0 for s, n in plane.store.count_tasks(name).items())


def timed_group(plane: ControlPlane, spec: GroupSpec) -> float:
    """Create and start a group on the running scheduler; seconds until every task ends."""
    plane.create_group(spec)
    t0 = time.perf_counter()
    plane.start_group(spec.name)
    while not _finished(plane, spec.name):
        time.sleep(0.05)
    elapsed = time.perf_counter() - t0
    status = plane.group_status(spec.name)
    assert status.state == "SUCCEEDED", status
    return elapsed


def task_group(
    plane: ControlPlane,
    name: str,
    cluster: str,
    source: Path,
    size: int,
    partitions: int,
) -> tuple[float, int]:
    """A preprocess group: seconds until every task ends, and the rows it wrote."""
    elapsed = timed_group(
        plane,
        GroupSpec(
            name=name,
            cluster=cluster,
            source=str(source),
            job="preprocess",
            config={"size": size},
            partitions=partitions,
            resources=Resources(cpus=1),
        ),
    )
    return elapsed, plane.group_result(name).num_rows


def ray_data(paths: list[str], out: Path, size: int) -> float:
    import pandas as pd
    import ray

    def fn(batch: pd.DataFrame) -> pd.DataFrame:
        t = preprocess_records(records(list(batch["path"])), PreprocessConfig(size=size))
        return pd.DataFrame({"id": t.column("id").to_pylist(), "n": [size] * t.num_rows})

    ds = ray.data.from_items([{"path": p} for p in paths], override_num_blocks=16)
    t0 = time.perf_counter()
    ds.map_batches(fn, batch_format="pandas", batch_size=2048, num_cpus=1).write_parquet(
        str(out / "raydata")
    )
    return time.perf_counter() - t0


SPARK_JOB = r"""
import json, os, sys, time
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
from pyspark.sql import SparkSession
import pandas as pd
paths, out, size = json.load(open(sys.argv[1])), sys.argv[2], int(sys.argv[3])
spark = (SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false")
         .config("spark.sql.execution.arrow.pyspark.enabled", "true").getOrCreate())
def fn(it):
    from despina.data.images import ImageRecord
    from despina.jobs.batch import PreprocessConfig, preprocess_records
    for batch in it:
        recs = [ImageRecord(id=p.rsplit("/", 1)[-1], path=p, label="x") for p in batch["path"]]
        t = preprocess_records(recs, PreprocessConfig(size=size))
        yield pd.DataFrame({"id": t.column("id").to_pylist(), "n": [size] * t.num_rows})
df = spark.createDataFrame(pd.DataFrame({"path": paths})).repartition(2)
df.count()
t0 = time.perf_counter()
df.mapInPandas(fn, "id string, n int").write.mode("overwrite").parquet(out)
print(json.dumps({"seconds": time.perf_counter() - t0}))
spark.stop()
"""


def spark(paths: list[str], out: Path, size: int, python: str) -> float | None:
    listing = out / "paths.json"
    listing.write_text(json.dumps(paths))
    script = out / "spark_job.py"
    script.write_text(SPARK_JOB)
    env = {**os.environ, "PYSPARK_PYTHON": python, "OMP_NUM_THREADS": "1"}
    res = subprocess.run(
        [python, str(script), str(listing), str(out / "spark"), str(size)],
        capture_output=True,
        text=True,
        env=env,
        timeout=1800,
    )
    if res.returncode != 0:
        print(f"spark failed: {res.stderr[-2000:]}", file=sys.stderr)
        return None
    return float(json.loads(res.stdout.strip().splitlines()[-1])["seconds"])


def noop_tasks(plane: ControlPlane, cluster: str, tmp: Path, n: int) -> float:
    src = tmp / f"rows-{cluster}.parquet"
    pq.write_table(pa.table({"i": list(range(n))}), src)
    script = tmp / "noop.py"
    script.write_text("def main(context):\n    return None\n")
    spec = GroupSpec(
        name=f"noop-{cluster}",
        cluster=cluster,
        source=str(src),
        script=str(script),
        partitions=n,
        resources=Resources(cpus=0.5),
    )
    return n / timed_group(plane, spec)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--limit", type=int, default=None, help="images (default: all 70,000)")
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument(
        "--partitions", type=int, default=16, help="chunks per engine (task-group partitions)"
    )
    ap.add_argument(
        "--cache", type=Path, default=Path(tempfile.gettempdir()) / "despina-fmnist-png"
    )
    ap.add_argument("--spark-python", default=None, help="python of an env with pyspark")
    ap.add_argument("--noop", type=int, default=1000, help="no-op tasks for the overhead test")
    ap.add_argument("--skip-ray", action="store_true")
    ap.add_argument(
        "--repeats", type=int, default=3, help="runs per engine; the median is reported"
    )
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    cv2.setNumThreads(1)
    paths = export_pngs(args.cache, args.limit)
    tmp = Path(tempfile.mkdtemp(prefix="despina-scaling-"))
    # A limited run: a folder of links to the first N files.
    source = args.cache if not args.limit else linked(paths, tmp / "src", os.symlink)
    n = len(paths)
    print(f"{n} images, size {args.size}", file=sys.stderr)
    for p in paths:  # page cache: the first engine must not pay for disk reads alone
        Path(p).read_bytes()
    reps = range(args.repeats)
    results: dict[str, float] = {}
    results["plain loop (1 process)"] = n / float(
        np.median([plain_loop(paths, tmp, args.size, args.partitions) for _ in reps])
    )
    print("loop done", file=sys.stderr)
    results["multiprocessing.Pool(2) (ceiling)"] = n / float(
        np.median([pool(paths, tmp, args.size, 2, args.partitions) for _ in reps])
    )

    settings = ControlSettings(
        home=tmp / "home",
        database_url=f"sqlite:///{tmp / 'home' / 'despina.db'}",
        allowed_roots=(tmp.resolve(), args.cache.resolve()),
    )
    plane = ControlPlane(settings)
    plane.create_cluster(ClusterSpec(name="one", workers=1))
    plane.create_cluster(ClusterSpec(name="two", workers=2))
    sched = Scheduler(plane.store, settings)
    plane.on_change(sched.wake)  # as `despina server start` wires its scheduler
    thread = threading.Thread(target=sched.run, daemon=True)
    thread.start()
    warm = tmp / "warm"
    for i in range(4):
        (warm / "x").mkdir(parents=True, exist_ok=True)
        shutil.copy(paths[i], warm / "x" / f"{i}.png")
    labels = {
        "one": "task group, local, 1 worker",
        "two": "task group, local, 2 workers",
        "ray2": "task group, ray, 2 workers",
    }

    def measure(c: str) -> None:
        task_group(plane, f"warm-{c}", c, warm, args.size, 2)  # workers up before timing
        times = []
        for r in reps:
            secs, rows = task_group(plane, f"prep-{c}-{r}", c, source, args.size, args.partitions)
            assert rows == n, f"{c}: {rows} rows for {n} images"
            times.append(secs)
        results[labels[c]] = n / float(np.median(times))
        print(f"{c} done", file=sys.stderr)

    # Each engine runs with no other engine's daemons on the machine: a Ray head's idle
    # processes take CPU that a 2-core machine does not have (they cost the local groups
    # about 7% when Ray was started first). So the local groups first, then Ray, which
    # is shut down before Spark.
    measure("one")
    measure("two")
    rates = {"two": noop_tasks(plane, "two", tmp, args.noop)}
    if not args.skip_ray:
        import ray

        ray.init(
            num_cpus=2,
            include_dashboard=False,
            object_store_memory=256 * 2**20,
            log_to_driver=False,
        )
        plane.create_cluster(ClusterSpec(name="ray2", backend="ray", address="auto", workers=2))
        measure("ray2")
        results["Ray Data map_batches"] = n / ray_data(paths, tmp, args.size)
        rates["ray2"] = noop_tasks(plane, "ray2", tmp, args.noop)
        ray.shutdown()
    sched.stop_event.set()
    thread.join(60)
    if args.spark_python:
        secs = spark(paths, tmp, args.size, args.spark_python)
        if secs:
            results["PySpark mapInPandas, local[2]"] = n / secs

    base = results["plain loop (1 process)"]
    ceiling = results["multiprocessing.Pool(2) (ceiling)"]
    rows = [[k, round(v), v / base, v / ceiling] for k, v in results.items()]
    print(
        f"## Preprocessing {n:,} Fashion-MNIST PNGs (decode, resize to {args.size}, "
        "normalize, Parquet)\n"
    )
    print(table(["engine", "images/s", "× plain loop", "of the 2-core ceiling"], rows))
    one = results["task group, local, 1 worker"]
    two = results["task group, local, 2 workers"]
    print(f"\nlocal task group: 2 workers / 1 worker = {two / one:.2f}×")
    if "task group, ray, 2 workers" in results and "Ray Data map_batches" in results:
        r = results["task group, ray, 2 workers"] / results["Ray Data map_batches"]
        print(f"ray task group / Ray Data = {r:.2f}×")
    print(f"\n## Scheduling overhead: {args.noop} no-op tasks\n")
    print(table(["backend", "tasks/s"], [[labels[c], round(r, 1)] for c, r in rates.items()]))
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
