"""Does ``despina optimize`` find a good model sooner than Ray Tune would?

The anchor users pick instead: Ray Tune with its ASHA scheduler and its default searcher
(random sampling), over the same search space, on the same data and split, with the same
budget and two trials at a time (one core each), in the same run. Both train each trial
with Despina's trainer, stop hopeless trials on the trainer's per-epoch validation
accuracy (Optuna's median pruner, ASHA), and score finished trials by their accuracy on
the same held-out 20% of the labels as given. The table gives each one's best accuracy
within the budget and how long each took to reach the lower of the two bests.

    python benchmarks/optimize_vs_tune.py --data ../shared/data/fashion-mnist [--budget 10]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _common import table

from despina.core.config import AuditConfig
from despina.jobs.optimize import optimize, prepare
from despina.jobs.search_space import DEFAULT_SPACE, configs


def tune_space() -> dict[str, Any]:
    from ray import tune

    space = {}
    for key, spec in DEFAULT_SPACE.items():
        if isinstance(spec, list):
            space[key] = tune.choice(spec)
        elif spec.get("log"):
            space[key] = tune.loguniform(spec["low"], spec["high"])
        else:
            space[key] = tune.uniform(spec["low"], spec["high"])
    return space


def trainable(params: dict[str, Any], x: Any, labels: Any, train: Any, test: Any,
              classes: int, epochs: int) -> None:  # fmt: skip
    import torch
    from ray import tune

    from despina.training.trainer import predict, train_classifier

    torch.set_num_threads(1)
    base = AuditConfig(seed=0)
    base = base.model_copy(update={"train": base.train.model_copy(update={"epochs": epochs})})
    cfg = configs(params, base)

    def epoch_done(epoch: int, _train: float, _val: float, accuracy: float) -> None:
        tune.report({"val_acc": accuracy})

    model = train_classifier(x[train], labels[train], classes, cfg.model, cfg.train, 0,
                             epoch_done)  # fmt: skip
    probs, _ = predict(model, x[test])
    accuracy = float((probs.argmax(1) == labels[test]).mean())
    tune.report({"val_acc": accuracy, "accuracy": accuracy, "finished_at": time.time()})


def run_tune(source: str, budget_s: float, epochs: int) -> tuple[list[tuple[float, float]], int]:
    """(seconds from the start, held-out accuracy) of each finished trial; trials started."""
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    data = prepare(source, 0)
    x = data.arrays(None, "auto")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    t0 = time.time()
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING,
             log_to_driver=False)  # fmt: skip
    try:
        fn = tune.with_resources(
            tune.with_parameters(trainable, x=x, labels=data.labels, train=data.train_idx,
                                 test=data.test_idx, classes=len(data.class_names),
                                 epochs=epochs),
            {"cpu": 1},
        )  # fmt: skip
        with tempfile.TemporaryDirectory() as tmp:
            tuner = tune.Tuner(
                fn,
                param_space=tune_space(),
                tune_config=tune.TuneConfig(
                    metric="val_acc", mode="max", num_samples=10_000,
                    scheduler=ASHAScheduler(max_t=epochs + 1), time_budget_s=budget_s,
                    max_concurrent_trials=2,
                ),
                run_config=tune.RunConfig(storage_path=tmp, verbose=0),
            )  # fmt: skip
            results = tuner.fit()
            frames = [r.metrics for r in results if r.metrics and "accuracy" in r.metrics]
            started = len(results)
    finally:
        ray.shutdown()
    return sorted((m["finished_at"] - t0, m["accuracy"]) for m in frames), started


def run_despina(source: str, budget_s: float, epochs: int) -> tuple[list[tuple[float, float]], int]:
    import optuna
    from optuna.storages.journal import JournalFileBackend

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.time()
        result = optimize(source, Path(tmp), trials=10_000, timeout_s=budget_s, workers=2,
                          epochs=epochs)  # fmt: skip
        storage = optuna.storages.JournalStorage(JournalFileBackend(f"{tmp}/study.journal"))
        study = optuna.load_study(study_name="despina", storage=storage)
        done = [
            (t.datetime_complete.timestamp() - t0, t.value)
            for t in study.trials
            if t.state.name == "COMPLETE" and t.datetime_complete is not None
        ]
    return sorted(done), len(result.trials)


def reach(points: list[tuple[float, float]], target: float) -> float | None:
    return next((t for t, acc in points if acc >= target), None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--train", type=int, default=5_000)
    ap.add_argument("--budget", type=float, default=10.0, help="minutes each")
    ap.add_argument("--epochs", type=int, default=15)
    args = ap.parse_args()
    source = f"fashion-mnist:{args.data.resolve()}?split=train&limit={args.train}"
    runs = {
        "despina optimize (TPE + median pruner)": run_despina(source, args.budget * 60,
                                                              args.epochs),
        "Ray Tune (ASHA, random search)": run_tune(source, args.budget * 60, args.epochs),
    }  # fmt: skip
    # Only trials finished within the budget count: Optuna lets running trials finish
    # after its timeout, Ray Tune stops them.
    budget = args.budget * 60
    runs = {k: ([p for p in pts if p[0] <= budget], n) for k, (pts, n) in runs.items()}
    target = min(max(a for _, a in pts) for pts, _ in runs.values())
    rows = []
    for name, (pts, started) in runs.items():
        best = max(a for _, a in pts)
        at = reach(pts, target)
        rows.append([name, started, len(pts), round(best, 4), round(at or float("nan"), 1)])
        print(name, [(round(t), round(a, 4)) for t, a in pts], flush=True)
    print(table(["search", "trials started", f"completed within {args.budget:g} min",
                 "best held-out accuracy", f"s to reach {target:.4f}"], rows))  # fmt: skip
    a, b = (r[4] for r in rows)
    print(f"\ntime to the same accuracy, despina / Ray Tune: {a / b:.2f}")


if __name__ == "__main__":
    main()
