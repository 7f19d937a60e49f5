"""Where a search's Optuna study lives, and its trials as rows and tables.

The study is in Optuna's RDB storage, in a schema of its own, when the control plane's
database is PostgreSQL (Optuna's tables and Alembic history never meet Despina's), with
Optuna's heartbeat marking a dead worker's trial failed and queueing it again. Otherwise
it is in an Optuna journal file: SQLite locks under parallel writers, and a journal file
is what Optuna offers for processes sharing one machine's disk.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy.engine import make_url

from despina.core.errors import ConfigError

#: Seconds between a running trial's heartbeats, and the silence after which it is dead.
HEARTBEAT_S = 10
GRACE_S = 60
#: Columns of a trial row, as written to ``trials.parquet`` and a worker's partition.
ROW_COLUMNS = ("number", "state", "accuracy", "train_seconds", "audit_minutes",
               "infer_ms", "duration_s", "default", "worker", "retry_of", "pareto")  # fmt: skip


def _is_postgres(url: str) -> bool:
    return bool(url) and make_url(url).get_backend_name() == "postgresql"


def close_storage(storage: Any) -> None:
    """Return an RDB storage's pooled connections (a journal holds none open)."""
    engine = getattr(storage, "engine", None)
    if engine is not None:
        engine.dispose()


def study_schema(url: str) -> str:
    """Optuna's schema beside the control plane's: ``<its schema>_optuna``, or
    ``despina_optuna`` when the URL does not name one."""
    options = make_url(url).query.get("options", "")
    text = options if isinstance(options, str) else " ".join(options)
    for part in text.replace("-c ", "-c").split():
        if part.startswith("-csearch_path="):
            first = part.split("=", 1)[1].split(",")[0].strip().strip('"')
            if first and first != "public":
                return f"{first}_optuna"
    return "despina_optuna"


def study_storage(journal: Path, database_url: str = "") -> Any:
    """The study storage: PostgreSQL (RDB, heartbeat, retry) when ``database_url`` (the
    control plane's) is PostgreSQL, else a journal file at ``journal``."""
    import optuna
    from optuna.storages.journal import JournalFileBackend

    url = database_url
    if not _is_postgres(url):
        journal.parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(JournalFileBackend(str(journal)))
    import sqlalchemy as sa

    schema = study_schema(url)
    base = make_url(url)
    try:
        engine = sa.create_engine(base)
        with engine.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        engine.dispose()
    except sa.exc.OperationalError as exc:
        raise ConfigError(
            f"cannot reach the study storage at {base.render_as_string(hide_password=True)}: "
            f"{str(exc.orig).splitlines()[0]}; check DESPINA_DATABASE_URL and that the "
            "database is up"
        ) from None
    query = {k: v for k, v in base.query.items() if k != "options"}
    target = base.set(query={**query, "options": f"-csearch_path={schema}"})
    with warnings.catch_warnings():  # the heartbeat is marked experimental since Optuna 2.8
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RDBStorage(
            target.render_as_string(hide_password=False),
            heartbeat_interval=HEARTBEAT_S,
            grace_period=GRACE_S,
            heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(2),
        )


def requeue_stale(study: Any, worker: str | None = None) -> int:
    """Trials left RUNNING by a killed worker (``worker``'s own, or every one when no
    other worker can be running): failed, and queued again with the parameters they had."""
    from optuna.trial import TrialState

    stale = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if worker is None or t.user_attrs.get("worker") == worker
    ]
    for t in stale:
        study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        study.enqueue_trial(t.params, user_attrs={"retry_of": t.number})
    return len(stale)


def trial_rows(study: Any) -> list[dict[str, Any]]:
    """Every trial of the study as a row: number, state, accuracy, costs, parameters."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        duration = None
        if t.datetime_start and t.datetime_complete:
            duration = (t.datetime_complete - t.datetime_start).total_seconds()
        rows.append(
            {
                "number": t.number,
                "state": t.state.name,
                "accuracy": t.value,
                "train_seconds": t.user_attrs.get("train_seconds"),
                "audit_minutes": t.user_attrs.get("audit_minutes"),
                "infer_ms": t.user_attrs.get("infer_ms"),
                "duration_s": duration,
                "default": bool(t.user_attrs.get("default")),
                "worker": t.user_attrs.get("worker"),
                "retry_of": t.user_attrs.get("retry_of"),  # the killed trial it runs again
                "image_size": t.user_attrs.get("image_size"),
                "curve": list(t.user_attrs.get("curve", [])),
                "params": dict(t.params),
            }
        )
    return rows


def pareto(rows: list[dict[str, Any]], objectives: tuple[str, ...]) -> set[int]:
    """Numbers of the completed trials no other completed trial beats on every objective:
    higher accuracy, lower audit time (``cost``), lower inference time (``latency``)."""
    keys = {"accuracy": ("accuracy", 1), "cost": ("audit_minutes", -1),
            "latency": ("infer_ms", -1)}  # fmt: skip
    done = [r for r in rows if r["state"] == "COMPLETE" and r["accuracy"] is not None]

    def score(r: dict[str, Any]) -> tuple[float, ...]:
        return tuple(keys[o][1] * float(r[keys[o][0]] or 0) for o in objectives)

    front = set()
    for r in done:
        s = score(r)
        beaten = any(
            all(a >= b for a, b in zip(score(o), s, strict=True)) and score(o) != s for o in done
        )
        if not beaten:
            front.add(r["number"])
    return front


def rows_table(rows: list[dict[str, Any]]) -> pa.Table:
    """Trial rows as a table: the row columns, each epoch's accuracy, the parameters as
    one JSON column and one ``param_<key>`` column each."""
    keys = sorted({k for r in rows for k in r["params"]})
    columns: dict[str, Any] = {k: [r.get(k) for r in rows] for k in ROW_COLUMNS}
    columns["image_size"] = pa.array([r.get("image_size") for r in rows], pa.int64())
    columns["curve"] = pa.array([r["curve"] for r in rows], pa.list_(pa.float64()))
    columns["params"] = [json.dumps(r["params"], sort_keys=True) for r in rows]
    for k in keys:
        columns[f"param_{k}"] = [json.dumps(r["params"].get(k)) for r in rows]
    return pa.table(columns)


def table_rows(table: pa.Table) -> list[dict[str, Any]]:
    """:func:`rows_table` read back, in trial order."""
    rows = []
    for r in table.to_pylist():
        rows.append(
            {
                **{k: r.get(k) for k in ROW_COLUMNS},
                "image_size": r.get("image_size"),
                "curve": list(r.get("curve") or []),
                "params": json.loads(r["params"]),
            }
        )
    return sorted(rows, key=lambda r: r["number"])


def write_table(path: Path, table: pa.Table) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)
