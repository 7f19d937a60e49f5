"""The sequence audit end to end through the CLI, on real series with known problems."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from despina.cli.app import app
from despina.models.store import load_model

runner = CliRunner()


@pytest.fixture(scope="module")
def italy(tmp_path_factory: pytest.TempPathFactory) -> dict:  # type: ignore[type-arg]
    from aeon.datasets import load_italy_power_demand

    x, y = load_italy_power_demand()
    x, y = np.asarray(x[:400, 0], np.float64), np.asarray(y[:400]).astype(str)
    rng = np.random.default_rng(0)
    flipped = set(rng.choice(np.arange(10, 400), 30, replace=False).tolist())
    for i in flipped:
        y[i] = "1" if y[i] == "2" else "2"
    x[3] = x[3, 0]  # a stuck sensor: one value throughout
    x[4, 5] = np.nan
    copies = np.vstack([x[5], x[6] + rng.normal(0, 1e-3, x.shape[1])])
    x, y = np.vstack([x, copies]), np.concatenate([y, [y[5], y[6]]])
    tmp = tmp_path_factory.mktemp("italy")
    frame = pd.DataFrame(x, columns=[f"t{i}" for i in range(x.shape[1])])
    frame.insert(0, "label", y)
    frame.to_csv(tmp / "italy.csv", index=False)
    out = tmp / "out"
    args = ["--kind", "sequence", "--target", "label", "--folds", "3", "-q"]
    res = runner.invoke(app, ["audit", str(tmp / "italy.csv"), "--out", str(out), *args])
    assert res.exit_code == 0, res.output
    return {"out": out, "flipped": flipped, "n": len(y)}


def test_series_findings_duplicates_and_label_flips(italy) -> None:  # type: ignore[no-untyped-def]
    out = italy["out"]
    s = pd.read_csv(out / "samples.csv", keep_default_na=False, dtype={"id": str})
    assert len(s) == italy["n"]
    assert s.loc[3, "value_findings"].startswith("flatline:")
    assert s.loc[4, "value_findings"] == "missing:1"
    n = italy["n"]
    assert s.loc[5, "duplicate_group"] == s.loc[n - 2, "duplicate_group"] != ""
    assert s.loc[n - 2, "duplicate_kind"] == "exact" and s.loc[n - 1, "duplicate_kind"] == "near"
    flagged = set(np.flatnonzero(s["is_label_issue"].to_numpy(bool)))
    assert len(flagged & italy["flipped"]) >= 0.6 * len(italy["flipped"])
    assert len(flagged & italy["flipped"]) >= 0.6 * len(flagged)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["kind"] == "sequence" and summary["model_family"] == "cnn"
    assert summary["model"]["onnx_max_difference"] <= 1e-4
    html = (out / "report.html").read_text()
    assert "<polyline" in html  # flagged series are drawn
    saved = load_model(out / "model")
    assert saved.config["family"] == "cnn" and saved.config["layout"] == "NCL"
    cleaned = pd.read_csv(out / "cleaned.csv")
    assert len(cleaned) == n - int(s["is_duplicate"].sum())


def test_long_layout_without_a_target_checks_values_and_duplicates(tmp_path: Path) -> None:
    from aeon.datasets import load_italy_power_demand

    x, _ = load_italy_power_demand()
    rows = [(f"s{k}", t, float(v)) for k in range(40) for t, v in enumerate(x[k, 0])]
    rows += [("copy", t, float(v)) for t, v in enumerate(x[7, 0])]
    rows = [r for r in rows if not (r[0] == "s2" and r[1] in (10, 11))]  # a gap
    frame = pd.DataFrame(rows, columns=["series_id", "t", "value"])
    frame.to_csv(tmp_path / "long.csv", index=False)
    # series_id and t columns: a sequence source without --kind
    res = runner.invoke(app, ["audit", str(tmp_path / "long.csv"), "--out",
                              str(tmp_path / "o"), "-q"])  # fmt: skip
    assert res.exit_code == 0, res.output
    s = pd.read_csv(tmp_path / "o" / "samples.csv", keep_default_na=False, dtype={"id": str})
    by_id = s.set_index("id")
    assert by_id.loc["s2", "value_findings"] == "gap:2"
    assert by_id.loc["copy", "duplicate_group"] == by_id.loc["s7", "duplicate_group"] != ""
    assert not (tmp_path / "o" / "model").exists()


def test_one_class_and_unknown_family_are_refused(tmp_path: Path) -> None:
    csv = tmp_path / "w.csv"
    csv.write_text("label,t0,t1\na,1,2\na,2,3\n")
    res = runner.invoke(app, ["audit", str(csv), "--kind", "sequence", "--target", "label",
                              "--out", str(tmp_path / "o")])  # fmt: skip
    assert res.exit_code == 3 and "at least two classes" in " ".join(res.output.split())
    res = runner.invoke(app, ["audit", str(csv), "--kind", "sequence", "--family", "tcn",
                              "--out", str(tmp_path / "o")])  # fmt: skip
    assert res.exit_code == 2 and "cnn, gru, lstm, hybrid" in res.output
