"""Do two search workers finish more trials per hour than one?

The same study, run for ``--minutes`` with one worker process (all cores to it) and then
with two (the cores split between them), on digits and, given ``--data``, on
Fashion-MNIST. The space searches the learning rate of one fixed model only, so every
trial costs about the same and the counts compare. Trials and epochs per hour, side by
side in one run.

    python benchmarks/optimize_workers.py [--data ../shared/data/fashion-mnist] [--minutes 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import table

from despina.jobs.optimize import optimize
from despina.jobs.search_space import Space

SPACE = {"learning_rate": {"low": 1e-3, "high": 1e-2, "log": True}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path)
    ap.add_argument("--train", type=int, default=3_000)
    ap.add_argument("--minutes", type=float, default=3.0)
    ap.add_argument("--epochs", type=int, default=4)
    args = ap.parse_args()
    sets = [("digits", "builtin:digits")]
    if args.data is not None:
        sets.append(("Fashion-MNIST", f"fashion-mnist:{args.data.resolve()}?limit={args.train}"))
    rows = []
    for name, source in sets:
        rates = {}
        for workers in (1, 2):
            with tempfile.TemporaryDirectory() as tmp:
                result = optimize(
                    source, Path(tmp), trials=100_000, timeout_s=args.minutes * 60,
                    space=Space.parse(SPACE), workers=workers, epochs=args.epochs,
                )  # fmt: skip
            done = [t for t in result.trials if t["state"] in ("COMPLETE", "PRUNED")]
            epochs = sum(len(t["curve"]) for t in done)
            hours = args.minutes / 60
            rates[workers] = len(done) / hours
            rows.append([name, workers, len(done), round(len(done) / hours),
                         round(epochs / hours), round(rates[workers] / rates[1], 2)])  # fmt: skip
            print(rows[-1], flush=True)
    print()
    print(table(["data", "workers", "trials finished", "trials/hour", "epochs/hour",
                 "× one worker"], rows))  # fmt: skip


if __name__ == "__main__":
    main()
