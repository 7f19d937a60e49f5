"""Where a loaded server's CPU goes: ``perf record -a`` over both cores while ``wrk`` loads
``despina serve`` on the reference-cost CNN of ``benchmarks/serving.py``, reported per
program and shared library (ONNX Runtime, the Python interpreter, NumPy, OpenCV, the
kernel...), with the milliseconds per request each stands for.

    python benchmarks/serving_cpu.py [--serve-args "--workers 2 --threads 1"]

Needs ``wrk`` and ``perf`` (Debian: apt install wrk linux-perf) and the right to sample
every CPU (root, or kernel.perf_event_paranoid <= -1).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import table
from serving import WIDTH_HELP, Server, despina_serve, sized_setup, wrk


def shares(data: Path) -> list[tuple[str, str, float]]:
    """(command, library, percent of all samples) from ``perf report``."""
    out = subprocess.run(
        ["perf", "report", "-i", str(data), "--sort", "comm,dso", "--stdio"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rows = []
    for line in out.splitlines():
        m = re.match(r"\s*([\d.]+)%\s+(\S+)\s+(\S+)", line)
        if m:
            rows.append((m.group(2), m.group(3), float(m.group(1))))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--width", type=int, help=WIDTH_HELP)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--serve-args", default="--workers 2 --threads 1")
    ap.add_argument("--top", type=int, default=10, help="rows to show")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp_text:
        tmp = Path(tmp_text)
        args.width, model, _, script = sized_setup(tmp, "cpu", args.width)
        argv = despina_serve(model, *args.serve_args.split())
        with Server(argv) as srv:
            url = f"http://127.0.0.1:{srv.port}/v1/deployments/cpu/predict"
            wrk(url, script, args.connections, 3)  # warm up
            data = tmp / "perf.data"
            perf = subprocess.Popen(
                [
                    "perf",
                    "record",
                    "-a",
                    "-F",
                    "499",
                    "-o",
                    str(data),
                    "--",
                    "sleep",
                    str(args.seconds),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            r = wrk(url, script, args.connections, args.seconds)
            if perf.wait() != 0:
                raise SystemExit(
                    "perf record failed: is perf installed, and may it sample every CPU?"
                )
        rows = shares(data)
    cores = len(os.sched_getaffinity(0))
    per_request = args.seconds * cores * 1000 / max(1, r["requests"]) / 100  # ms per 1%
    print(
        f"`despina serve {args.serve_args}`, width {args.width}, wrk -c{args.connections} "
        f"{args.seconds}s: {r['rps']:.0f} req/s; {cores} cores"
    )
    print(
        table(
            ["command", "library", "% of all CPU", "ms / request"],
            [[c, d, p, round(p * per_request, 3)] for c, d, p in rows[: args.top]],
        )
    )


if __name__ == "__main__":
    main()
