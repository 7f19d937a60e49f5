"""Where an image audit's memory goes: resident memory sampled every 10 ms, as growth over
what the process held when each part began.

- ``--check-sizes``: the near-duplicate check alone on the decode pass of the first N
  Fashion-MNIST images (train, then test), two threads, each size in a fresh process
  that has loaded torch already, as an audit has (compare sizes for the growth per image).
- ``--audit N``: the default one-task audit (``despina.audit``, 2 workers) of N images,
  each stage and each check; the folds' own processes are not counted.

    python benchmarks/audit_memory.py --data ../shared/data/fashion-mnist \
        [--check-sizes 10000,30000] [--audit 10000]
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

sys.path.insert(0, str(Path(__file__).parent))
from _common import decode_pass, table

T = TypeVar("T")
MIB = 2**20


def rss_mib() -> float:
    import os

    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / MIB


class Sampler:
    """The highest resident memory since the last :meth:`part` began."""

    def __init__(self) -> None:
        self.peak = rss_mib()
        self.rows: list[list[object]] = []
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while True:
            self.peak = max(self.peak, rss_mib())
            time.sleep(0.01)

    @contextlib.contextmanager
    def part(self, name: str) -> Iterator[None]:
        """Measure the block as a row; a part inside another counts toward both."""
        outer = self.peak
        start = self.peak = rss_mib()
        yield
        peak = self.peak
        self.rows.append([name, round(start), round(peak), round(rss_mib()), round(peak - start)])
        self.peak = max(outer, peak)


def source(data: Path, n: int) -> str:
    return f"fashion-mnist:{data}?split=all&limit={n}"


def check_alone(data: Path, n: int) -> None:
    """One size of ``--check-sizes``, in this process: prints one table row as CSV."""
    from despina.audit.checks import DuplicateCheck
    from despina.data.sources import load_source

    sampler = Sampler()
    ctx = decode_pass(load_source(source(data, n)), 28, threads=2, workers=2)
    t0 = time.perf_counter()
    with sampler.part("check"):
        result = DuplicateCheck().run(ctx)
    _, start, peak, end, growth = sampler.rows[0]
    in_sets = int((result.details["group_of"] >= 0).sum())
    seconds = time.perf_counter() - t0
    print(f"{n},{start},{peak},{end},{growth},{seconds:.1f},{in_sets}")


def stages_of_audit(data: Path, n: int) -> list[list[object]]:
    """The one-task audit of ``n`` images with each stage and check measured."""
    import despina
    from despina.audit import runner
    from despina.core.config import AuditConfig
    from despina.jobs import audit as audit_job
    from despina.jobs import rounds

    sampler = Sampler()
    stage_call = rounds.Stages.__call__

    @contextlib.contextmanager
    def measured_stage(self: rounds.Stages, name: str) -> Iterator[None]:
        with sampler.part(name), stage_call(self, name):
            yield

    run_checks = runner.run_checks

    def measured_checks(ctx, checks, progress=None):  # type: ignore[no-untyped-def]
        outcomes = {}
        for check in checks:
            with sampler.part(f"  check {check.name}"):
                outcomes.update(run_checks(ctx, [check], progress))
        return outcomes

    rounds.Stages.__call__ = measured_stage  # type: ignore[method-assign]
    audit_job.run_checks = measured_checks  # type: ignore[attr-defined]
    with tempfile.TemporaryDirectory() as out:
        despina.audit(source(data, n), out, AuditConfig(workers=2))
    return sampler.rows


def timed(fn: Callable[[], T]) -> tuple[T, float]:
    t0 = time.perf_counter()
    return fn(), time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, required=True, help="the Fashion-MNIST folder")
    ap.add_argument("--check-sizes", default="10000,30000")
    ap.add_argument("--audit", type=int, default=0, help="images of the one-task audit (0: none)")
    ap.add_argument("--one-check", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one_check:
        check_alone(args.data, args.one_check)
        return
    rows: list[list[object]] = []
    for n in [int(v) for v in args.check_sizes.split(",") if v]:
        done = subprocess.run(
            [sys.executable, __file__, "--data", str(args.data), "--one-check", str(n)],
            capture_output=True,
            text=True,
            check=True,
        )
        rows.append(list(done.stdout.strip().splitlines()[-1].split(",")))
    if rows:
        print("## The near-duplicate check alone (MiB of resident memory)\n")
        print(table(["images", "start", "peak", "end", "peak growth", "seconds", "in sets"], rows))
        print()
    if args.audit:
        stages, seconds = timed(lambda: stages_of_audit(args.data, args.audit))
        print(f"## The one-task audit of {args.audit} images ({seconds:.0f} s; MiB)\n")
        print(table(["stage", "start", "peak", "end", "growth"], stages))


if __name__ == "__main__":
    main()
