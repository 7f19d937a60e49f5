"""A table too large to hold: a CSV of about 2 GiB built from Shuttle's rows (river),
resampled with seeded noise, each with a unique id, audited through the CLI. Peak memory of
the audit (its largest process) beside what reading the threshold's worth of the same file
whole takes, in the same run.

    pip install -e '.[bench]' torch==2.13.0
    python benchmarks/table_stream.py [--gib 2] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from _common import table

from despina.data import table_stream

BLOCK = 1_000_000


def shuttle() -> pd.DataFrame:
    from river.datasets import Shuttle

    rows = [{**x, "class": y} for x, y in Shuttle()]
    return pd.DataFrame(rows)


def build(path: Path, gib: float, seed: int = 0) -> int:
    """Write rows until the file reaches ``gib``; returns its rows. Four blocks of resampled
    rows with noise are formatted once and written again and again behind a running id
    (formatting every row anew would take most of the benchmark)."""
    base = shuttle()
    rng = np.random.default_rng(seed)
    features = [c for c in base.columns if c != "class"]
    blocks = []
    for _ in range(4):
        block = base.iloc[rng.integers(0, len(base), BLOCK)].reset_index(drop=True)
        noise = rng.normal(0, 0.5, (BLOCK, len(features)))
        block[features] = (block[features].to_numpy(float) + noise).round(1)
        blocks.append(block.to_csv(header=False, index=False).splitlines())
    written = 0
    with path.open("w") as fh:
        fh.write(",".join(["id", *base.columns]) + "\n")
        while fh.tell() < gib * 2**30:
            lines = blocks[(written // BLOCK) % len(blocks)]
            fh.write("".join(f"{written + i},{line}\n" for i, line in enumerate(lines)))
            written += BLOCK
    return written


def peak_rss_whole(path: Path, limit: int) -> tuple[float, float]:
    """Peak MiB and seconds of reading the first ``limit`` bytes of ``path`` whole, as text
    the way a table that fits is read, in a fresh process."""
    code = (
        "import resource,sys,time,pandas as pd,io;"
        f"t=time.perf_counter();b=open(sys.argv[1],'rb').read({limit});"
        "b=b[:b.rindex(b'\\n')+1];"
        "f=pd.read_csv(io.BytesIO(b),dtype=str,keep_default_na=False);del b;"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss/1024,time.perf_counter()-t)"
    )
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True,
                         text=True, check=True).stdout.split()  # fmt: skip
    return float(out[0]), float(out[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gib", type=float, default=2.0)
    ap.add_argument("--keep", type=Path, help="build the file here and keep it")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "shuttle-big.csv"
        t0 = time.perf_counter()
        rows = build(path, args.gib)
        built = time.perf_counter() - t0
        size = path.stat().st_size / 2**30
        t0 = time.perf_counter()
        run = subprocess.run(
            [str(Path(sys.executable).parent / "despina"), "audit", str(path), "--target", "class",
             "--out", str(folder / "out"), "--quiet"],
            capture_output=True, text=True,
        )  # fmt: skip
        seconds = time.perf_counter() - t0
        if run.returncode:
            print(run.stdout, run.stderr)
            raise SystemExit(run.returncode)
        # Measured before any other child runs: the peak over the audit's processes.
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        whole_mib, whole_s = peak_rss_whole(path, table_stream.STREAM_BYTES)
        summary = json.loads((folder / "out" / "summary.json").read_text())
    streamed = summary["streamed"]
    timings = summary["timings"]
    print(f"built {rows:,} rows ({size:.2f} GiB) in {built:.0f} s")
    print(
        table(
            ["file GiB", "rows in file", "rows audited", "read and sample s", "audit s",
             "peak MiB (largest process)",
             f"reading {table_stream.STREAM_BYTES / 2**20:.0f} MiB of it whole: MiB (s)"],
            [[f"{size:.2f}", f"{streamed['rows_in_file']:,}", f"{streamed['sampled_rows']:,}",
              f"{timings.get('load', 0):.0f}", f"{seconds:.0f}", f"{peak:.0f}",
              f"{whole_mib:.0f} ({whole_s:.0f})"]],
        )
    )  # fmt: skip


if __name__ == "__main__":
    main()
