"""One serving setting off and on, alternating servers: p50 at concurrency 1 over the
bare cost, and requests per second and p99 at concurrency 32 (``--many``), for the sized CNN of
``benchmarks/serving.py`` at the issue's reference cost (the width whose bare cost is 2.4 ms
on this machine) or a given width (8: a 0.3 ms model that is answered on the event loop).

    python benchmarks/serving_ab.py DESPINA_LONE_SPINNING --values 0 1

Alternating rounds, because this machine's speed drifts by tens of percent within
minutes; compare the two columns of one run only. Needs ``wrk``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _common import table
from serving import WIDTH_HELP, Server, bare_around, despina_serve, loaded, sized_setup, wrk


def cells(
    server: Server, url: str, script: Path, many: int, seconds: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    """wrk at concurrency 1, then at ``many`` with the server's CPU per request."""
    return wrk(url, script, 1, seconds), loaded(server, url, script, many, seconds)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("variable", help="the DESPINA_ environment variable to vary")
    ap.add_argument("--values", nargs=2, default=["0", "1"], help="its two values")
    ap.add_argument("--width", type=int, help=WIDTH_HELP)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=6, help="wrk duration per cell")
    ap.add_argument("--many", type=int, default=32, help="the loaded cell's concurrency")
    ap.add_argument(
        "--serve-args",
        default="",
        help='more arguments of `despina serve` for both servers, e.g. "--workers 2 --threads 1"',
    )
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp_text:
        tmp = Path(tmp_text)
        args.width, model, photo, script = sized_setup(tmp, "ab", args.width)
        rows = []
        argv = despina_serve(model, *args.serve_args.split())
        for rnd in range(args.rounds):
            for value in args.values:
                with Server(argv, {args.variable: value}) as srv:
                    url = f"http://127.0.0.1:{srv.port}/v1/deployments/ab/predict"
                    (one, many), t_bare = bare_around(
                        model, photo, cells, srv, url, script, args.many, args.seconds
                    )
                    t_bare *= 1000  # ms
                rows.append(
                    [
                        rnd,
                        value,
                        round(one["p50"], 2),
                        round(t_bare, 2),
                        round(one["p50"] / t_bare, 2),
                        round(many["rps"]),
                        round(many["rps"] * t_bare / 2000, 2),
                        round(many["p99"], 1),
                        round(many["core_ms"], 2),
                        one["errors"] + many["errors"],
                    ]
                )
                print(rows[-1], flush=True)
    print(f"\nwidth {args.width}; {args.variable} {args.serve_args}".rstrip())
    columns = ["round", "value", "p50 c=1 ms", "bare ms", "p50 / bare", f"req/s c={args.many}"]
    columns += ["req/s / two-core bare", f"p99 ms c={args.many}"]
    columns += [f"server core-ms / request c={args.many}", "non-2xx"]
    print(table(columns, rows))


if __name__ == "__main__":
    main()
