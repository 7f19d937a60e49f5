"""``despina optimize``: a real Optuna study on digits through the CLI, pruning, resuming
after a kill, bad search spaces, and the audit reading the winner's best.yaml."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

from despina.cli.app import app
from tests.waiting import wait_for

runner = CliRunner()

# Learning rates from hopeless to good: the median pruner has trials to stop early.
PRUNABLE = {
    "learning_rate": {"low": 1e-6, "high": 1e-2, "log": True},
    "optimizer": ["adamw", "sgd"],
    "width": [16, 32],
}


def _ok(*args: str) -> str:
    res = runner.invoke(app, list(args))
    assert res.exit_code == 0, res.output
    return res.output


def _error(*args: str) -> str:
    res = runner.invoke(app, list(args))
    assert res.exit_code != 0, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    return lines[0]


def test_a_tiny_study_on_digits_writes_best_yaml_trials_and_a_report(tmp_path: Path) -> None:
    out = tmp_path / "search"
    text = _ok("optimize", "builtin:digits", "--out", str(out), "--trials", "4",
               "--epochs", "2", "--workers", "2", "--objectives", "accuracy,latency")  # fmt: skip
    assert "best accuracy" in text and "default model" in text
    trials = pq.read_table(out / "trials.parquet").to_pylist()
    finished = [t for t in trials if t["state"] in ("COMPLETE", "PRUNED")]
    assert len(finished) >= 4
    default = next(t for t in trials if t["default"])
    assert default["state"] == "COMPLETE" and default["accuracy"] > 0.8
    assert all(len(t["curve"]) >= 1 for t in finished)
    complete = [t for t in trials if t["state"] == "COMPLETE"]
    assert all(t["infer_ms"] > 0 and t["audit_minutes"] > 0 for t in complete)
    front = [t for t in complete if t["pareto"]]
    assert front and "accuracy,latency" in text
    assert max(complete, key=lambda t: t["accuracy"]) in front
    best = yaml.safe_load((out / "best.yaml").read_text())
    assert set(best) == {"image_size", "color_mode", "model", "train"}
    top = max(t["accuracy"] for t in trials if t["state"] == "COMPLETE")
    assert f"{top:.4f}" in text
    page = (out / "report.html").read_text()
    assert "Model search" in page and "<svg" in page and "default" in page


def test_the_median_pruner_stops_hopeless_trials(tmp_path: Path) -> None:
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(PRUNABLE))
    out = tmp_path / "search"
    _ok("optimize", "builtin:digits", "--out", str(out), "--trials", "9", "--epochs", "4",
        "--space", str(space), "--seed", "1")  # fmt: skip
    trials = pq.read_table(out / "trials.parquet").to_pylist()
    pruned = [t for t in trials if t["state"] == "PRUNED"]
    assert pruned, [(t["state"], t["accuracy"]) for t in trials]
    assert all(len(t["curve"]) < 4 for t in pruned)  # stopped before the last epoch


def test_a_study_resumes_after_its_process_is_killed(tmp_path: Path) -> None:
    """SIGKILL mid-trial: running the command again finishes the study, the trial that was
    running is failed and run again once, and no finished trial is lost."""
    import optuna

    out = tmp_path / "search"
    cmd = [str(Path(sys.executable).parent / "despina"), "optimize", "builtin:digits",
           "--out", str(out), "--trials", "5", "--epochs", "3"]  # fmt: skip
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    from optuna.storages.journal import JournalFileBackend

    def states() -> list[str]:
        if not (out / "study.journal").exists():
            return []
        storage = optuna.storages.JournalStorage(JournalFileBackend(str(out / "study.journal")))
        study = optuna.load_study(study_name="despina", storage=storage)
        return [t.state.name for t in study.get_trials(deepcopy=False)]

    try:
        wait_for(lambda: "COMPLETE" in states() and "RUNNING" in states(), 240, 0.2,
                 "one finished trial and one running")  # fmt: skip
        before = states()
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    time.sleep(0.5)
    _ok(*cmd[1:])
    trials = pq.read_table(out / "trials.parquet").to_pylist()
    assert [t["state"] for t in trials[: len(before)]].count("COMPLETE") == before.count(
        "COMPLETE"
    )  # nothing finished was lost
    failed = [t["number"] for t in trials if t["state"] == "FAIL"]
    assert failed == [before.index("RUNNING")]
    finished = [t for t in trials if t["state"] in ("COMPLETE", "PRUNED")]
    assert len(finished) >= 5
    # The killed trial ran again, once. Killed while its parameters were being proposed,
    # it has only some of them (none if killed first thing): its retry keeps those and
    # proposes the rest.
    again = [t for t in trials if t["retry_of"] == failed[0]]
    assert len(again) == 1 and again[0]["state"] != "FAIL"
    killed = {k: v for k, v in trials[failed[0]].items() if k.startswith("param_") and v != "null"}
    assert killed.items() <= again[0].items()


@pytest.mark.parametrize(
    ("space", "words"),
    [
        ({"widht": [16]}, "unknown key 'widht'"),
        ({"width": []}, "empty list of choices"),
        ({"learning_rate": {"low": 0.1, "high": 0.01}}, "empty range"),
        ({"width": ["wide"]}, "not a valid value"),
        ({"activation": ["tanh"]}, "not a valid value"),
    ],
)
def test_a_bad_search_space_is_one_line_and_writes_nothing(
    tmp_path: Path, space: dict[str, object], words: str
) -> None:
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(space))
    out = tmp_path / "search"
    assert words in _error("optimize", "builtin:digits", "--out", str(out), "--space", str(path))
    assert not out.exists()


def test_bad_runs_are_refused_saying_what_to_do(tmp_path: Path) -> None:
    out = tmp_path / "search"
    assert "at least one trial" in _error("optimize", "builtin:digits", "--out", str(out),
                                          "--trials", "0")  # fmt: skip
    one_class = tmp_path / "one"
    (one_class / "cat").mkdir(parents=True)
    import cv2
    import numpy as np

    for i in range(4):
        cv2.imwrite(str(one_class / "cat" / f"{i}.png"), np.full((8, 8), i * 40, np.uint8))
    assert "at least two classes" in _error("optimize", str(one_class), "--out", str(out))
    assert not out.exists()
    _ok("optimize", "builtin:digits", "--out", str(out), "--trials", "1", "--epochs", "1")
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({"width": [8, 16]}))
    assert "another search space" in _error("optimize", "builtin:digits", "--out", str(out),
                                            "--space", str(space))  # fmt: skip


def test_the_audit_trains_the_model_best_yaml_describes(tmp_path: Path) -> None:
    best = tmp_path / "best.yaml"
    best.write_text(
        yaml.safe_dump(
            {
                "image_size": 8,
                "color_mode": "auto",
                "model": {"width": 12, "depth": 2, "activation": "silu", "residual": True},
                "train": {"epochs": 2, "loss": "gce"},
            }
        )
    )
    out = tmp_path / "audit"
    _ok("audit", "builtin:digits", "--out", str(out), "--model-config", str(best), "--folds",
        "2", "--label-rounds", "1", "--quiet")  # fmt: skip
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["model"]["width"] == 12
    assert summary["config"]["model"]["activation"] == "silu"
    assert summary["config"]["train"]["loss"] == "gce"
    saved = json.loads((out / "model" / "model.json").read_text())
    assert saved["residual"] is True and saved["width"] == 12
    best.write_text("colour_mode: rgb\n")
    assert "unknown keys" in _error("audit", "builtin:digits", "--out", str(tmp_path / "x"),
                                    "--model-config", str(best))  # fmt: skip


def test_audit_optimize_searches_then_audits_with_the_winner(tmp_path: Path) -> None:
    out = tmp_path / "audit"
    text = _ok("audit", "builtin:digits", "--out", str(out), "--optimize", "2", "--epochs", "2",
               "--folds", "2", "--label-rounds", "1", "--quiet")  # fmt: skip
    assert "model search: best held-out accuracy" in text
    best = yaml.safe_load((out / "search" / "best.yaml").read_text())
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["model"] == best["model"]
    assert summary["config"]["train"] == best["train"]
    assert "not both" in _error("audit", "builtin:digits", "--out", str(tmp_path / "x"),
                                "--optimize", "2", "--model-config", str(out / "search" /
                                "best.yaml"))  # fmt: skip


def test_the_pareto_front_holds_the_trials_nothing_beats(tmp_path: Path) -> None:
    from despina.jobs.study import pareto

    rows = [
        {"number": 0, "state": "COMPLETE", "accuracy": 0.90, "audit_minutes": 1.0, "infer_ms": 3},
        {"number": 1, "state": "COMPLETE", "accuracy": 0.95, "audit_minutes": 3.0, "infer_ms": 1},
        {"number": 2, "state": "COMPLETE", "accuracy": 0.89, "audit_minutes": 2.0, "infer_ms": 2},
        {"number": 3, "state": "PRUNED", "accuracy": 0.99, "audit_minutes": 0.1, "infer_ms": 1},
    ]
    assert pareto(rows, ("accuracy", "cost")) == {0, 1}
    assert pareto(rows, ("accuracy", "latency")) == {1}
    assert pareto(rows, ("accuracy", "cost", "latency")) == {0, 1, 2}
    assert "objectives" in _error("optimize", "builtin:digits", "--out", str(tmp_path / "s"),
                                  "--objectives", "latency")  # fmt: skip
