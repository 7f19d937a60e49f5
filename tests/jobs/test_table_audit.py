"""The table audit end to end through the CLI, on a real table with known problems."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_wine
from typer.testing import CliRunner

from despina.cli.app import app
from despina.data.table_inject import inject_table_problems
from despina.models.store import load_model
from despina.preprocessing.table import TablePipeline

runner = CliRunner()


@pytest.fixture(scope="module")
def wine_audit(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict]:  # type: ignore[type-arg]
    tmp = tmp_path_factory.mktemp("wine")
    base = load_wine(as_frame=True).frame.rename(columns={"target": "cultivar"})
    base["cultivar"] = base["cultivar"].map({0: "barolo", 1: "grignolino", 2: "barbera"})
    inj = inject_table_problems(base, "cultivar", rate=0.02, seed=0)
    # Label flips on rows the injection left alone.
    rng = np.random.default_rng(0)
    untouched = np.setdiff1d(np.arange(len(inj.frame)), sorted(inj.touched))
    flipped = {int(i) for i in rng.choice(untouched, 12, replace=False)}
    for i in flipped:
        given = inj.frame.loc[i, "cultivar"]
        inj.frame.loc[i, "cultivar"] = rng.choice([c for c in ("barolo", "grignolino",
                                                   "barbera") if c != given])  # fmt: skip
    csv = tmp / "wine.csv"
    inj.frame.to_csv(csv, index=False)
    out = tmp / "out"
    res = runner.invoke(app, ["audit", str(csv), "--target", "cultivar", "--out", str(out), "-q"])
    assert res.exit_code == 0, res.output
    return csv, out, {"inj": inj, "flipped": flipped}


def test_outputs_have_the_tables_columns_and_every_finding(wine_audit) -> None:  # type: ignore[no-untyped-def]
    csv, out, info = wine_audit
    for name in ("samples.csv", "summary.json", "report.html", "cleaned.csv", "model/model.onnx"):
        assert (out / name).is_file(), name
    samples = pd.read_csv(out / "samples.csv", keep_default_na=False)
    table = pd.read_csv(csv)
    assert len(samples) == len(table)
    assert {"alcohol", "proline", "value_findings", "duplicate_kind"} <= set(samples.columns)
    inj = info["inj"]
    for kind in ("missing", "type", "range"):
        for r in inj.cells[kind]:
            assert samples.loc[r, "value_findings"].startswith(f"{kind}:"), (kind, r)
    for kind in ("exact", "near", "conflicting"):
        for a, b in inj.copies[kind]:
            assert samples.loc[a, "duplicate_group"] == samples.loc[b, "duplicate_group"] != ""
    summary = json.loads((out / "summary.json").read_text())
    assert summary["kind"] == "table" and summary["oof_accuracy"] > 0.85
    assert {c["name"] for c in summary["schema"]["columns"]} == set(table.columns) - {"cultivar"}
    cleaned = pd.read_csv(out / "cleaned.csv")
    assert list(cleaned.columns) == list(table.columns)
    assert len(cleaned) == len(table) - int(samples["is_duplicate"].sum()) - len(
        inj.cells["type"] + inj.cells["range"]
    )
    html = (out / "report.html").read_text()
    assert "Bad values" in html and "proline" in html


def test_label_flips_are_found_and_relabeled(wine_audit) -> None:  # type: ignore[no-untyped-def]
    _, out, info = wine_audit
    samples = pd.read_csv(out / "samples.csv", keep_default_na=False)
    flagged = set(np.flatnonzero(samples["is_label_issue"].to_numpy(bool)))
    flipped = info["flipped"]
    # A conflicting copy's rows disagree on the label: one of each pair is wrong too.
    conflicting = {r for pair in info["inj"].copies["conflicting"] for r in pair}
    assert len(flagged & flipped) >= 0.7 * len(flipped)
    assert len(flagged & (flipped | conflicting)) >= 0.6 * len(flagged)


def test_the_saved_model_reloads_and_matches_its_onnx_export(wine_audit) -> None:  # type: ignore[no-untyped-def]
    import onnxruntime as ort
    import torch

    csv, out, _ = wine_audit
    saved = load_model(out / "model")
    assert saved.config["architecture"] == "TabularMLP"
    pipe = TablePipeline.load(out / "model" / "preprocessing.json")
    from despina.data.tables import read_table

    x = pipe.transform(read_table(csv, "cultivar").frame)[:20]
    with torch.no_grad():
        logits = saved.model(torch.from_numpy(x)).numpy()
    session = ort.InferenceSession(str(out / "model" / "model.onnx"))
    onnx_logits = session.run(None, {"x": x})[0]
    assert np.abs(onnx_logits - logits).max() <= 1e-4


@pytest.mark.parametrize(
    ("text", "args", "code", "match"),
    [
        ("a,y\n1,p\n2,p\n", ["--target", "y"], 3, "has 'p' in every row"),
        ("a,y\n1,p\n2,q,3\n", ["--target", "y"], 3, "line 3"),
        ("a,y\n1,p\n", ["--target", "nope"], 3, "its columns are: a, y"),
        ("a,y\n1,p\n", ["--kind", "tabular"], 2, "use image, table, sequence or auto"),
    ],
    ids=["one class", "ragged", "no such target", "bad kind"],
)
def test_bad_tables_exit_with_one_clear_line(
    tmp_path: Path, text: str, args: list[str], code: int, match: str
) -> None:
    csv = tmp_path / "t.csv"
    csv.write_text(text)
    res = runner.invoke(app, ["audit", str(csv), "--out", str(tmp_path / "o"), "-q", *args])
    assert res.exit_code == code and match in " ".join(res.output.split()), res.output
    assert not (tmp_path / "o" / "samples.csv").exists()


def test_an_image_folder_refuses_table_options(digits_folder: Path, tmp_path: Path) -> None:
    res = runner.invoke(
        app, ["audit", str(digits_folder), "--target", "y", "--out", str(tmp_path / "o")]
    )
    assert res.exit_code == 2 and "--kind table" in res.output
