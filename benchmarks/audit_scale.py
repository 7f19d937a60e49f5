"""The audit's scan stage at scale: all 70,000 Fashion-MNIST images (PNG files in class
folders) decoded once into shards (statistics, hashes, thumbnails, the resized model
input), as the first stage of a staged audit group, against the same function run in
one process and in a ``multiprocessing.Pool(2)`` (the ceiling), in one run; then a
two-node Ray cluster on this machine. The group's second stage (the audit of the whole
source) is cancelled before it can start: only the scan is timed here.

Each engine runs after one pass that reads every file into the page cache, with its
workers started before the timing (a scheduler keeps its workers, as a server does).

    pip install -e '.[bench]' torch==2.13.0
    python benchmarks/audit_scale.py [--limit N] [--partitions 16] [--skip-ray]
"""

from __future__ import annotations

import argparse
import itertools
import multiprocessing as mp
import os
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).parent))
from _common import table
from scaling import export_pngs, linked

from despina.control.models import ClusterSpec, GroupSpec, Resources
from despina.control.plane import ControlPlane
from despina.control.scheduler import Scheduler
from despina.control.settings import ControlSettings
from despina.control.states import TaskState
from despina.data.images import ImageRecord
from despina.data.sources import load_source
from despina.jobs.shards import scan_shard

SIZE = 28


def shard(args: tuple[list[ImageRecord], str]) -> int:
    """One partition's shard, written as Parquet, as a scan task writes it."""
    records, out = args
    cv2.setNumThreads(1)
    t = scan_shard(records, SIZE, 64_000_000)
    pq.write_table(t, out)
    return int(t.num_rows)


def cuts(n: int, parts: int) -> list[tuple[int, int]]:
    edges = np.linspace(0, n, parts + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in itertools.pairwise(edges)]


def plain(records: list[ImageRecord], out: Path, parts: int) -> float:
    t0 = time.perf_counter()
    done = sum(shard((records[a:b], str(out / f"loop-{i}.parquet")))
               for i, (a, b) in enumerate(cuts(len(records), parts)))  # fmt: skip
    assert done == len(records)
    return time.perf_counter() - t0


def pool(records: list[ImageRecord], out: Path, parts: int) -> float:
    with mp.get_context("spawn").Pool(2) as p:
        p.map(int, range(2))  # start-up outside the timing
        t0 = time.perf_counter()
        jobs = [(records[a:b], str(out / f"pool-{i}.parquet"))
                for i, (a, b) in enumerate(cuts(len(records), parts))]  # fmt: skip
        done = sum(p.map(shard, jobs, chunksize=1))
        elapsed = time.perf_counter() - t0
    assert done == len(records)
    return elapsed


def staged_scan(plane: ControlPlane, name: str, cluster: str, source: str, parts: int) -> dict:
    """Seconds until every scan task of a staged audit group ends (its audit task is then
    cancelled), with the shards' bytes and the nodes that ran them."""
    plane.create_group(GroupSpec(name=name, cluster=cluster, source=source, job="audit",
                                 config={"image_size": SIZE}, partitions=parts,
                                 resources=Resources(cpus=1)))  # fmt: skip
    t0 = time.perf_counter()
    tasks = plane.start_group(name)
    scans = [t.id for t in tasks if t.stage == 0]
    plane.cancel_task(next(t.id for t in tasks if t.stage == 1))  # before it can start
    while not all(plane.get_task(i).state.terminal for i in scans):
        time.sleep(0.05)
    elapsed = time.perf_counter() - t0
    ended = [plane.get_task(i) for i in scans]
    assert all(t.state is TaskState.SUCCEEDED for t in ended), [t.exit_reason for t in ended]
    size = sum(Path(t.outputs[0]).stat().st_size for t in ended)
    nodes = {t.metrics.get("node", "local") for t in ended}
    return {"seconds": elapsed, "bytes": size, "nodes": len(nodes), "tasks": len(ended)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--limit", type=int, default=None, help="images (default: all 70,000)")
    ap.add_argument("--partitions", type=int, default=16)
    ap.add_argument(
        "--cache", type=Path, default=Path(tempfile.gettempdir()) / "despina-fmnist-png"
    )
    ap.add_argument("--skip-ray", action="store_true")
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    paths = export_pngs(args.cache, args.limit)
    tmp = Path(tempfile.mkdtemp(prefix="despina-audit-scale-"))
    # A limited run: hard links to the first N files (an audit does not follow symlinks).
    source = linked(paths, tmp / "src", os.link) if args.limit else args.cache
    n = len(paths)
    for p in paths:
        Path(p).read_bytes()
    rows: list[list[object]] = []
    records = load_source(str(source)).records  # listed once, as a group's plan lists it
    shard((records[:8], str(tmp / "warm.parquet")))  # imports outside the timing
    loop = plain(records, tmp, args.partitions)
    rows.append(["one process (plain loop)", 1, f"{n / loop:,.0f}", "1.00", "-", "-"])
    ceiling = pool(records, tmp, args.partitions)
    rows.append(["multiprocessing.Pool(2) (ceiling)", args.partitions, f"{n / ceiling:,.0f}",
                 f"{loop / ceiling:.2f}", "1.00", "-"])  # fmt: skip

    settings = ControlSettings(
        home=tmp / "home",
        database_url=f"sqlite:///{tmp / 'home' / 'despina.db'}",
        allowed_roots=(tmp.resolve(), args.cache.resolve()),
    )
    plane = ControlPlane(settings)
    sched = Scheduler(plane.store, settings)
    plane.on_change(sched.wake)
    thread = threading.Thread(target=sched.run, daemon=True)
    thread.start()
    warm = str(args.cache / "bag")  # a small staged group first: the workers start

    def run(cluster: str, label: str) -> None:
        staged_scan(plane, f"warm-{cluster}", cluster, warm, 2)
        got = staged_scan(plane, f"scan-{cluster}", cluster, str(source), args.partitions)
        rows.append([label, got["tasks"], f"{n / got['seconds']:,.0f}",
                     f"{loop / got['seconds']:.2f}", f"{ceiling / got['seconds']:.2f}",
                     f"{got['bytes'] / 2**20:,.0f} MiB on {got['nodes']} node(s)"])  # fmt: skip

    plane.create_cluster(ClusterSpec(name="one", workers=1))
    plane.create_cluster(ClusterSpec(name="two", workers=2))
    run("one", "staged audit group, local, 1 worker")
    run("two", "staged audit group, local, 2 workers")
    if not args.skip_ray:
        import ray
        from ray.cluster_utils import Cluster

        node = {"num_cpus": 1, "object_store_memory": 128 * 2**20}
        ray_cluster = Cluster(initialize_head=True,
                              head_node_args={**node, "include_dashboard": False})  # fmt: skip
        ray_cluster.add_node(**node)
        ray_cluster.wait_for_nodes()
        ray.init(address=ray_cluster.address, log_to_driver=False)
        plane.create_cluster(ClusterSpec(name="ray", backend="ray",
                                         address=ray_cluster.address, workers=2,
                                         resources=Resources(cpus=2)))  # fmt: skip
        run("ray", "staged audit group, Ray, two nodes of 1 CPU")
        ray.shutdown()
        ray_cluster.shutdown()
    sched.stop_event.set()
    thread.join(60)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{n:,} images resized to {SIZE}; driver peak {peak:.0f} MiB")
    print(table(["engine", "tasks", "images/s", "× one process", "× Pool(2)", "shards"], rows))


if __name__ == "__main__":
    main()
