"""Helpers every part of the store shares: UTC times, inserts that name conflicts, and the
one mapping between specs, rows and frozen snapshots."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Session

from despina.control.states import TaskState
from despina.control.store.tables import TaskRow
from despina.core.errors import ConflictError

M = TypeVar("M", bound=BaseModel)


def utcnow() -> datetime:
    return datetime.now(UTC)


def aware(value: datetime | None) -> datetime | None:
    """SQLite hands datetimes back without a zone; everything stored is UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def spec_columns(spec: BaseModel, row: type[DeclarativeBase]) -> dict[str, Any]:
    """The fields of ``spec`` that ``row`` has a column of the same name for (JSON-ready)."""
    columns = row.__table__.columns.keys()
    return {k: v for k, v in spec.model_dump(mode="json").items() if k in columns}


def snapshot(model: type[M], row: Any, **values: Any) -> M:
    """A frozen snapshot of ``row``: every field of ``model`` that ``row`` has an attribute
    of the same name for, datetimes made UTC-aware; ``values`` give the others (names of
    joined rows, derived states)."""
    for name in model.model_fields:
        if name not in values and hasattr(row, name):
            value = getattr(row, name)
            values[name] = aware(value) if isinstance(value, datetime) else value
    return model(**values)


def insert_row(s: Session, row: Any, conflict: str) -> None:
    """Add ``row`` now; a unique name already taken is a ConflictError saying ``conflict``
    (the transaction rolls back as the error leaves the session)."""
    s.add(row)
    try:
        s.flush()
    except IntegrityError:
        raise ConflictError(conflict) from None


def pending_task_row(
    group_id: int, partition: int, spec: dict[str, Any], log: Path, now: datetime
) -> TaskRow:
    """A new task's row: PENDING, first attempt, nothing done yet."""
    return TaskRow(
        group_id=group_id,
        partition=partition,
        stage=int(spec.get("stage", 0)),
        spec=spec,
        state=TaskState.PENDING.value,
        attempt=1,
        done=0,
        total=spec.get("total"),
        created_at=now,
        log_path=str(log),
        metrics={},
        outputs=[],
        cancel_requested=False,
    )
