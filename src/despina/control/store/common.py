"""Helpers every part of the store shares: UTC times and inserts that name conflicts."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from despina.core.errors import ConflictError


def utcnow() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime | None) -> datetime | None:
    """SQLite hands datetimes back without a zone; everything stored is UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _insert(s: Session, row: Any, conflict: str) -> None:
    """Add ``row`` now; a unique name already taken is a ConflictError saying ``conflict``
    (the transaction rolls back as the error leaves the session)."""
    s.add(row)
    try:
        s.flush()
    except IntegrityError:
        raise ConflictError(conflict) from None
