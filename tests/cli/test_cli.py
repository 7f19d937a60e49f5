"""The CLI: exit 0 with a table when the audit ran; one line and a non-zero code on bad input."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from despina.cli.app import app

runner = CliRunner()


def test_audit_runs_and_prints_the_report_path(digits_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = runner.invoke(
        app,
        [
            "audit",
            str(digits_folder),
            "--out",
            str(out),
            "--folds",
            "2",
            "--epochs",
            "2",
            "--width",
            "8",
            "--quiet",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "health score" in res.output and str(out / "report.html") in res.output.replace("\n", "")
    assert (out / "samples.csv").is_file()
    assert "out-of-fold model accuracy" in res.output


def test_bad_input_is_one_line_and_non_zero(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    res = runner.invoke(
        app, ["audit", str(tmp_path / "empty"), "--out", str(tmp_path / "o"), "--quiet"]
    )
    assert res.exit_code == 3
    assert "error:" in res.output and "Traceback" not in res.output


def test_invalid_option_is_refused(digits_folder: Path, tmp_path: Path) -> None:
    res = runner.invoke(
        app, ["audit", str(digits_folder), "--out", str(tmp_path / "o"), "--folds", "1", "--quiet"]
    )
    assert res.exit_code == 2
    assert res.output.strip().splitlines() == [
        "error: --folds 1: use 2 to 50 folds (each sample is predicted by a model trained on "
        "the other folds; 5 is the default)"
    ]


def test_a_round_share_that_is_not_one_is_refused(digits_folder: Path, tmp_path: Path) -> None:
    for share, says in (
        ("a third", "--round-share a third: use a share of the epochs such as 1/3 or 0.5"),
        ("3/2", "invalid option round_share: Input should be less than or equal to 1"),
    ):
        out = tmp_path / "o"
        res = runner.invoke(app, ["audit", str(digits_folder), "--out", str(out),
                                  "--round-share", share, "--quiet"])  # fmt: skip
        assert res.exit_code == 2 and says in res.output, res.output
        assert not out.exists()  # refused before anything is written


def test_unknown_check_is_refused(digits_folder: Path, tmp_path: Path) -> None:
    res = runner.invoke(
        app,
        [
            "audit",
            str(digits_folder),
            "--out",
            str(tmp_path / "o"),
            "--checks",
            "label,vibes",
            "--quiet",
        ],
    )
    assert res.exit_code == 2 and "vibes" in res.output


def test_help_lists_the_commands() -> None:
    res = runner.invoke(app, ["--help"])
    assert res.exit_code == 0 and "audit" in res.output and "demo" in res.output


def test_the_cli_reference_page_matches_the_commands() -> None:
    """docs/cli.md is the commands' own --help; regenerate it with
    ``python -m despina.cli.reference > docs/cli.md`` after changing a command."""
    from despina.cli.reference import render

    page = Path(__file__).resolve().parents[2] / "docs" / "cli.md"
    assert page.read_text(encoding="utf-8") == render()
    assert "## `despina group retry`" in page.read_text(encoding="utf-8")
