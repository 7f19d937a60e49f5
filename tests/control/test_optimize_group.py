"""The ``optimize`` job: a model search whose trials run as the tasks of a task group, on
a journal beside the group's output (SQLite planes) or in PostgreSQL's own schema."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from despina.cli.app import app
from despina.control.models import ClusterSpec, GroupSpec
from despina.control.plane import ControlPlane
from despina.control.states import TaskState
from despina.core.errors import ConfigError
from despina.jobs.study import close_storage, study_schema, study_storage
from tests.control.fixtures import make_settings, postgres_url

SPACE = {"width": [8, 16], "learning_rate": {"low": 1e-3, "high": 1e-2, "log": True}}
SEARCH = {"trials": 4, "epochs": 2, "space": SPACE}


def _run_search(plane: ControlPlane, name: str, **config: object) -> list[dict[str, object]]:
    plane.create_cluster(ClusterSpec(name="c", workers=2))
    plane.create_group(
        GroupSpec(
            name=name,
            cluster="c",
            source="builtin:digits",
            job="optimize",
            config={**SEARCH, **config},
            partitions=2,
        )
    )
    tasks = plane.start_group(name, wait=True)
    assert {t.state for t in tasks} == {TaskState.SUCCEEDED}, plane.task_logs(tasks[0].id)[0]
    return plane.group_result(name).to_pylist()


def _check_search(rows: list[dict[str, object]], output: Path) -> None:
    numbers = [r["number"] for r in rows]
    assert len(numbers) == len(set(numbers))  # every trial once, by the worker that ran it
    finished = [r for r in rows if r["state"] in ("COMPLETE", "PRUNED")]
    assert len(finished) >= 4
    assert {r["worker"] for r in rows} == {"p0", "p1"}  # both tasks ran trials
    assert sum(bool(r["default"]) for r in rows) == 1
    best = yaml.safe_load((output / "best.yaml").read_text())
    assert best["model"]["width"] in (8, 16)
    assert (output / "report.html").read_text().count("<svg") >= 2


@pytest.mark.slow
def test_an_optimize_group_runs_its_trials_as_worker_tasks(plane: ControlPlane) -> None:
    rows = _run_search(plane, "search")
    _check_search(rows, Path(plane.get_group("search").output))
    assert (Path(plane.get_group("search").output) / "study.journal").is_file()


@pytest.fixture
def pg_plane(tmp_path: Path) -> Iterator[tuple[ControlPlane, str]]:
    gen = postgres_url()
    url = next(gen)
    plane = ControlPlane(make_settings(tmp_path, url))
    try:
        yield plane, url
    finally:
        plane.close()
        import sqlalchemy as sa

        engine = sa.create_engine(url)
        with engine.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{study_schema(url)}" CASCADE'))
        engine.dispose()
        next(gen, None)


@pytest.mark.slow
@pytest.mark.postgres
def test_on_postgresql_the_study_lives_in_its_own_schema(
    pg_plane: tuple[ControlPlane, str],
) -> None:
    import optuna
    import sqlalchemy as sa

    plane, url = pg_plane
    rows = _run_search(plane, "search")
    output = Path(plane.get_group("search").output)
    _check_search(rows, output)
    assert not (output / "study.journal").exists()
    schema = study_schema(url)
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        tables = dict(
            conn.execute(
                sa.text(
                    "select table_name, table_schema from information_schema.tables "
                    "where table_name in ('trials', 'alembic_version', 'task_groups')"
                )
            ).all()
        )
        despina_schema = conn.execute(sa.text("select current_schema()")).scalar()
    engine.dispose()
    assert tables["trials"] == schema != despina_schema
    assert tables["task_groups"] == despina_schema
    storage = study_storage(Path("unused"), url)
    try:
        study = optuna.load_study(study_name="search", storage=storage)
        assert len(study.trials) == len(rows)
        # A study of that name with another space is refused, saying what to do.
        from despina.jobs.optimize import open_study
        from despina.jobs.search_space import Space

        with pytest.raises(ConfigError, match="another search space"):
            open_study(storage, "search", Space.parse({"width": [4]}), 0)
    finally:
        close_storage(storage)


def test_a_worker_requeues_the_trial_its_killed_attempt_left_running(
    plane: ControlPlane,
) -> None:
    """A trial a dead worker left RUNNING in the study is failed and run again, once."""
    import optuna

    plane.create_cluster(ClusterSpec(name="c", workers=1))
    plane.create_group(
        GroupSpec(
            name="s",
            cluster="c",
            source="builtin:digits",
            job="optimize",
            config={**SEARCH, "trials": 2},
            partitions=1,
        )
    )
    output = Path(plane.get_group("s").output)
    storage = study_storage(output / "study.journal")
    from despina.jobs.optimize import open_study
    from despina.jobs.search_space import Space

    study = open_study(storage, "s", Space.parse(SPACE), 0)
    left = study.ask({"width": optuna.distributions.CategoricalDistribution([8, 16])})
    left.set_user_attr("worker", "p0")  # what the killed first attempt of partition 0 had
    (task,) = plane.start_group("s", wait=True)
    assert task.state is TaskState.SUCCEEDED, plane.task_logs(task.id)[0]
    trials = optuna.load_study(study_name="s", storage=storage).trials
    assert trials[0].state.name == "FAIL"
    retried = [t for t in trials if t.user_attrs.get("retry_of") == 0]
    assert len(retried) == 1 and retried[0].params["width"] == left.params["width"]
    assert retried[0].state.name in ("COMPLETE", "PRUNED")


def test_bad_search_configs_are_refused_when_the_group_is_created(plane: ControlPlane) -> None:
    plane.create_cluster(ClusterSpec(name="c", workers=1))
    for config, words in (
        ({"trials": 0}, "trials"),
        ({"space": {"widht": [8]}}, "unknown key 'widht'"),
        ({"objectives": ["accuracy", "speed"]}, "objectives"),
    ):
        with pytest.raises(ConfigError, match=words):
            plane.create_group(
                GroupSpec(
                    name="s", cluster="c", source="builtin:digits", job="optimize", config=config
                )
            )


def test_an_unreachable_study_database_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot reach the study storage"):
        study_storage(tmp_path / "j", "postgresql+psycopg://nobody@127.0.0.1:1/none")


@pytest.mark.slow
def test_despina_optimize_on_a_cluster_writes_the_search_locally(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DESPINA_HOME", str(tmp_path / "home"))
    runner = CliRunner()
    res = runner.invoke(app, ["cluster", "create", "c", "--workers", "2"])
    assert res.exit_code == 0, res.output
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(SPACE))
    out = tmp_path / "search"
    args = ["optimize", "builtin:digits", "--out", str(out), "--cluster", "c", "--workers", "2",
            "--trials", "3", "--epochs", "1", "--space", str(space)]  # fmt: skip
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "best accuracy" in res.stdout and "Pareto front" in res.stdout
    assert (out / "best.yaml").is_file() and (out / "trials.parquet").is_file()
    # Running it again finds the finished group and writes the same choice.
    first = (out / "best.yaml").read_text()
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert (out / "best.yaml").read_text() == first
