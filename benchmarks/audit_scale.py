"""The staged audit at scale, stage by stage, each against the same functions run in one
process and in a ``multiprocessing.Pool(2)`` (the ceiling), in one run, then on a
two-node Ray cluster on this machine:

1. the scan: all 70,000 Fashion-MNIST images (PNG files in class folders) decoded once
   into shards (statistics, hashes, thumbnails, the resized model input); the group's
   later stages are cancelled before they can start;
2. the folds and the audit: the first ``--fold-images`` images audited end to end by a
   staged group (scan, a fold task per fold, the audit task), the fold stage timed
   against the same fold function in one process and in the pool; with every stage's
   tasks, bytes written and read, and the workers' peak memory, and a projection of
   each stage's wall time to 1M and 10M images on 8 and 64 nodes from the measured
   per-image costs.

Each engine runs after one pass that reads every file into the page cache, with its
workers started before the timing (a scheduler keeps its workers, as a server does).

    pip install -e '.[bench]' torch==2.13.0
    python benchmarks/audit_scale.py [--limit N] [--partitions 16] [--skip-ray]
                                     [--fold-images 10000] [--epochs 3] [--skip-scan]
                                     [--groups-only]
"""

from __future__ import annotations

import argparse
import itertools
import json
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
from despina.core.config import AuditConfig, TrainConfig
from despina.data.images import ImageRecord
from despina.data.sources import load_source
from despina.jobs.audit import prepare_images
from despina.jobs.folds import train_fold
from despina.jobs.rounds import round_share
from despina.jobs.shards import merge_shards, scan_shard

SIZE = 28
FOLDS = 5
#: The audit's defaults, for the projection: how its models train, its label rounds.
DEFAULT_TRAIN, DEFAULT_AUDIT = TrainConfig(), AuditConfig()
DEFAULT_ROUNDS = DEFAULT_AUDIT.label_rounds


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
    """Seconds until every scan task of a staged audit group ends (its later stages are then
    cancelled), with the shards' bytes and the nodes that ran them."""
    plane.create_group(GroupSpec(name=name, cluster=cluster, source=source, job="audit",
                                 config={"image_size": SIZE}, partitions=parts,
                                 resources=Resources(cpus=1)))  # fmt: skip
    t0 = time.perf_counter()
    tasks = plane.start_group(name)
    scans = [t.id for t in tasks if t.stage == 0]
    for t in tasks:  # every later stage, before it can start
        if t.stage == 1:
            plane.cancel_task(t.id)
    while not all(plane.get_task(i).state.terminal for i in scans):
        time.sleep(0.05)
    elapsed = time.perf_counter() - t0
    ended = [plane.get_task(i) for i in scans]
    assert all(t.state is TaskState.SUCCEEDED for t in ended), [t.exit_reason for t in ended]
    size = sum(Path(t.outputs[0]).stat().st_size for t in ended)
    nodes = {t.metrics.get("node", "local") for t in ended}
    return {"seconds": elapsed, "bytes": size, "nodes": len(nodes), "tasks": len(ended)}


def fold_config(epochs: int) -> dict:
    return {"image_size": SIZE, "folds": FOLDS, "label_rounds": 1, "seed": 0,
            "train": {"epochs": epochs}}  # fmt: skip


def fold_job(args: tuple[list[str], str, dict, int, str]) -> int:
    """One fold as a fold task runs it: read every shard, prepare, train, write its table."""
    shard_paths, source, config, k, out = args
    cfg = AuditConfig(**config)
    scanned = merge_shards([pq.read_table(p) for p in shard_paths])
    prep = prepare_images(load_source(source), cfg, scanned=scanned)
    del scanned  # as the fold task: the scan not kept while training
    t = train_fold(prep, cfg, 0, k, None, threads=1)
    pq.write_table(t, out)
    return int(t.num_rows)


def folds_plain(jobs: list[tuple]) -> float:
    t0 = time.perf_counter()
    sum(fold_job(j) for j in jobs)
    return time.perf_counter() - t0


def folds_pool(jobs: list[tuple]) -> float:
    with mp.get_context("spawn").Pool(2) as p:
        p.map(int, range(2))  # start-up outside the timing
        t0 = time.perf_counter()
        p.map(fold_job, jobs, chunksize=1)
        return time.perf_counter() - t0


def tree_bytes(path: str) -> int:
    p = Path(path)
    return p.stat().st_size if p.is_file() else sum(f.stat().st_size for f in p.rglob("*")
                                                     if f.is_file())  # fmt: skip


def staged_audit(
    plane: ControlPlane, name: str, cluster: str, source: str, parts: int, config: dict
) -> dict:
    """A staged audit group run to the end: each stage's tasks, wall seconds (first start
    to last end), task seconds, bytes written and read, peak memory and nodes; the audit
    task's own timings; the whole group's wall seconds."""
    plane.create_group(GroupSpec(name=name, cluster=cluster, source=source, job="audit",
                                 config=config, partitions=parts, timeout_s=3600,
                                 resources=Resources(cpus=1)))  # fmt: skip
    t0 = time.perf_counter()
    ids = [t.id for t in plane.start_group(name)]
    while not all(plane.get_task(i).state.terminal for i in ids):
        time.sleep(0.1)
    wall = time.perf_counter() - t0
    tasks = [plane.get_task(i) for i in ids]
    assert all(t.state is TaskState.SUCCEEDED for t in tasks), [t.exit_reason for t in tasks]
    source_bytes = tree_bytes(source)
    stages: dict[int, dict] = {}
    for t in tasks:
        s = stages.setdefault(t.stage, {"tasks": 0, "seconds": 0.0, "written": 0, "peak": 0.0,
                                        "nodes": set(), "start": t.started_at,
                                        "end": t.ended_at})  # fmt: skip
        s["tasks"] += 1
        s["seconds"] += t.metrics["seconds"]
        s["written"] += sum(tree_bytes(o) for o in t.outputs)
        s["peak"] = max(s["peak"], t.metrics.get("peak_rss_mib") or 0.0)
        s["nodes"].add(t.metrics.get("node", "local"))
        s["start"], s["end"] = min(s["start"], t.started_at), max(s["end"], t.ended_at)
    last = max(stages)
    shards = stages[0]["written"]
    folds = sum(stages[k]["written"] for k in stages if 0 < k < last)
    for k, s in stages.items():
        s["wall"] = (s["end"] - s["start"]).total_seconds()
        # A scan reads its images; a fold reads every shard; the audit, shards and folds.
        s["read"] = source_bytes if k == 0 else shards * s["tasks"] if k < last else shards + folds
    final = next(t for t in tasks if t.stage == last)
    summary = json.loads(plane.read_output(Path(final.outputs[0]) / "summary.json"))
    return {"wall": wall, "stages": stages, "timings": summary["timings"]}


def stage_rows(got: dict, label: str) -> list[list[object]]:
    last = max(got["stages"])
    rows = []
    for k, s in sorted(got["stages"].items()):
        step = "scan" if k == 0 else "audit" if k == last else f"fold (round {k})"
        rows.append([label, step, s["tasks"], f"{s['wall']:.1f}", f"{s['seconds']:.1f}",
                     f"{s['written'] / 2**20:,.1f}", f"{s['read'] / 2**20:,.1f}",
                     f"{s['peak']:,.0f}", len(s["nodes"])])  # fmt: skip
    return rows


def projection(got: dict, n: int, epochs: int, warm_peak: float, warm_n: int) -> list[list]:
    """Each stage's wall time for 1M and 10M images on 8 and 64 nodes of 2 workers, from
    this run's per-image costs, at the audit's defaults (5 folds, 2 label rounds, each
    model the epochs its step budget gives it at that size: one from about 180,000
    images; the second round a third of them, at least one); the audit task's memory
    from its peak here and on the warm-up group."""
    st = got["stages"]
    last = max(st)
    train_rows = n * (FOLDS - 1) / FOLDS
    c_scan = st[0]["seconds"] / n
    fold_task = st[1]["seconds"] / st[1]["tasks"]
    c_fold = fold_task / (train_rows * epochs)  # per image-epoch, reading included
    final_s = got["timings"].get("final_model", 0.0)
    c_final = final_s / (n * epochs)
    c_checks = (st[last]["seconds"] - final_s) / n
    mib_per_image = (st[last]["peak"] - warm_peak) / max(1, n - warm_n)
    rows = []
    for big in (1_000_000, 10_000_000):
        for nodes in (8, 64):
            workers = 2 * nodes
            scan = big * c_scan / workers
            fold_rows = big * (FOLDS - 1) // FOLDS
            shares = [
                round_share(DEFAULT_AUDIT, None, r) for r in range(DEFAULT_AUDIT.label_rounds)
            ]
            epochs = sum(DEFAULT_AUDIT.fold_epochs(big, DEFAULT_TRAIN, s) for s in shares)
            folds = -(-FOLDS // workers) * c_fold * fold_rows * epochs
            audit = big * c_checks + big * DEFAULT_TRAIN.epochs_given(big) * c_final
            parts = {"scan": scan, "folds": folds, "audit": audit}
            rows.append([f"{big:,}", nodes, *(f"{v / 3600:,.1f}" for v in parts.values()),
                         f"{sum(parts.values()) / 3600:,.1f}", max(parts, key=parts.get),
                         f"{(warm_peak + mib_per_image * big) / 1024:,.0f}"])  # fmt: skip
    return rows


def scan_part(args: argparse.Namespace, paths: list[str], tmp: Path, plane: ControlPlane,
              ray_on: bool) -> None:  # fmt: skip
    # A limited run: hard links to the first N files (an audit does not follow symlinks).
    source = linked(paths, tmp / "src", os.link) if args.limit else args.cache
    n = len(paths)
    rows: list[list[object]] = []
    records = load_source(str(source)).records  # listed once, as a group's plan lists it
    shard((records[:8], str(tmp / "warm.parquet")))  # imports outside the timing
    loop = plain(records, tmp, args.partitions)
    rows.append(["one process (plain loop)", 1, f"{n / loop:,.0f}", "1.00", "-", "-"])
    ceiling = pool(records, tmp, args.partitions)
    rows.append(["multiprocessing.Pool(2) (ceiling)", args.partitions, f"{n / ceiling:,.0f}",
                 f"{loop / ceiling:.2f}", "1.00", "-"])  # fmt: skip
    warm = str(args.cache / "bag")  # a small staged group first: the workers start

    def run(cluster: str, label: str) -> None:
        staged_scan(plane, f"warm-{cluster}", cluster, warm, 2)
        got = staged_scan(plane, f"scan-{cluster}", cluster, str(source), args.partitions)
        rows.append([label, got["tasks"], f"{n / got['seconds']:,.0f}",
                     f"{loop / got['seconds']:.2f}", f"{ceiling / got['seconds']:.2f}",
                     f"{got['bytes'] / 2**20:,.0f} MiB on {got['nodes']} node(s)"])  # fmt: skip

    run("one", "staged audit group, local, 1 worker")
    run("two", "staged audit group, local, 2 workers")
    if ray_on:
        run("ray", "staged audit group, Ray, two nodes of 1 CPU")
    print(f"Scan: {n:,} images resized to {SIZE}")
    print(table(["engine", "tasks", "images/s", "× one process", "× Pool(2)", "shards"], rows))


def fold_part(args: argparse.Namespace, paths: list[str], tmp: Path, plane: ControlPlane,
              ray_on: bool) -> None:  # fmt: skip
    n = min(args.fold_images, len(paths))
    rng = np.random.default_rng(0)  # a seeded subset: every class, in proportion
    pick = rng.choice(len(paths), n + 400, replace=False)
    source = str(linked([paths[i] for i in sorted(pick[:n])], tmp / f"folds-{n}", os.link))
    config = fold_config(args.epochs)
    records = load_source(source).records
    shard_paths = []
    for i, (a, b) in enumerate(cuts(n, 4)):
        shard_paths.append(str(tmp / f"fold-shard-{i}.parquet"))
        shard((records[a:b], shard_paths[-1]))
    jobs = [(shard_paths, source, config, k, str(tmp / f"fold-{k}.parquet"))
            for k in range(FOLDS)]  # fmt: skip
    rows: list[list[object]] = []
    loop = ceiling = float("nan")
    if not args.groups_only:
        loop, ceiling = folds_plain(jobs), folds_pool(jobs)
        rows += [
            ["one process (plain loop)", FOLDS, f"{loop:.1f}", "1.00", "-"],
            ["multiprocessing.Pool(2) (ceiling)", FOLDS, f"{ceiling:.1f}",
             f"{loop / ceiling:.2f}", "1.00"],
        ]  # fmt: skip
    stages: list[list[object]] = []
    ends: dict[str, dict] = {}
    # A small audit of the bag folder first: the workers start, and its audit task's peak
    # is the memory an audit needs before its images.
    warm_src = str(linked([paths[i] for i in sorted(pick[n:])], tmp / "folds-warm", os.link))
    clusters = [("one", "local, 1 worker")] if not args.groups_only else []
    clusters += [("two", "local, 2 workers")]
    clusters += [("ray", "Ray, two nodes of 1 CPU")] if ray_on else []
    for cluster, label in clusters:
        warm = staged_audit(plane, f"warm-folds-{cluster}", cluster, warm_src, 2, config)
        got = staged_audit(plane, f"folds-{cluster}", cluster, source, 4, config)
        wall = got["stages"][1]["wall"]
        rows.append([f"staged audit group, {label}", FOLDS, f"{wall:.1f}", f"{loop / wall:.2f}",
                     f"{ceiling / wall:.2f}"])  # fmt: skip
        stages += stage_rows(got, label)
        ends[cluster] = {"got": got, "warm": warm}
    print(f"Folds: {n:,} images, {FOLDS} folds, 1 round, {args.epochs} epochs")
    print(table(["engine", "fold tasks", "fold stage s", "× one process", "× Pool(2)"], rows))
    print(table(["cluster", "stage", "tasks", "wall s", "task s", "written MiB", "read MiB",
                 "peak RSS MiB", "nodes"], stages))  # fmt: skip
    walls = {k: f"{v['got']['wall']:.1f} s" for k, v in ends.items()}
    print(f"whole group, end to end: {walls}")
    two = ends["two"]
    warm_last = two["warm"]["stages"][max(two["warm"]["stages"])]
    proj = projection(two["got"], n, args.epochs, warm_last["peak"], 400)
    print("Projection from the 2-worker run (hours per stage; nodes of 2 workers):")
    print(table(["images", "nodes", "scan h", "folds h", "audit h", "total h", "bottleneck",
                 "audit task GiB"], proj))  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--limit", type=int, default=None, help="images (default: all 70,000)")
    ap.add_argument("--partitions", type=int, default=16)
    ap.add_argument(
        "--cache", type=Path, default=Path(tempfile.gettempdir()) / "despina-fmnist-png"
    )
    ap.add_argument("--skip-ray", action="store_true")
    ap.add_argument("--skip-scan", action="store_true", help="the folds and the audit only")
    ap.add_argument("--fold-images", type=int, default=10_000)
    ap.add_argument("--epochs", type=int, default=3, help="epochs of each fold's training")
    ap.add_argument("--groups-only", action="store_true",
                    help="folds: the 2-worker group (and Ray) alone, no baselines")  # fmt: skip
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    paths = export_pngs(args.cache, args.limit)
    tmp = Path(tempfile.mkdtemp(prefix="despina-audit-scale-"))
    for p in paths:
        Path(p).read_bytes()
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
    plane.create_cluster(ClusterSpec(name="one", workers=1))
    plane.create_cluster(ClusterSpec(name="two", workers=2))
    ray_cluster = None
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
    if not args.skip_scan:
        scan_part(args, paths, tmp, plane, ray_cluster is not None)
    fold_part(args, export_pngs(args.cache, None), tmp, plane, ray_cluster is not None)
    if ray_cluster is not None:
        import ray

        ray.shutdown()
        ray_cluster.shutdown()
    sched.stop_event.set()
    thread.join(60)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"driver peak {peak:.0f} MiB")


if __name__ == "__main__":
    main()
