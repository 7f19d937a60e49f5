"""The store's reviews: what people decided about an audit's samples in the console.

Mixed into :class:`despina.control.store.Store`; the rules of the store's docstring apply.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from despina.control.models import Review
from despina.control.store.common import snapshot, utcnow
from despina.control.store.tables import GroupRow, ReviewRow


class ReviewStore:
    """Add, undo and list reviews of an audit group's samples."""

    _session: Callable[..., AbstractContextManager[Session]]
    _group_row: Callable[[Session, str], GroupRow]

    def add_review(
        self, group: str, sample: str, action: str, label: str | None, user: str
    ) -> Review:
        """Record ``user``'s verdict on ``sample``; it wins over earlier ones."""
        with self._session(write=True) as s:
            row = ReviewRow(group_id=self._group_row(s, group).id, sample=sample,
                            action=action, label=label, user=user, at=utcnow())  # fmt: skip
            s.add(row)
            s.flush()
            return snapshot(Review, row, group=group)

    def add_reviews(
        self, group: str, samples: list[str], action: str, label: str | None, user: str
    ) -> int:
        """The same verdict on each of ``samples``, in one transaction; how many."""
        with self._session(write=True) as s:
            gid, at = self._group_row(s, group).id, utcnow()
            s.add_all(ReviewRow(group_id=gid, sample=sample, action=action, label=label,
                                user=user, at=at) for sample in samples)  # fmt: skip
        return len(samples)

    def undo_review(self, group: str, sample: str) -> Review | None:
        """Undo the latest standing review of ``sample``; the one it undid, or None."""
        with self._session(write=True) as s:
            row = s.scalar(
                self._standing(s, group, [sample]).order_by(ReviewRow.id.desc()).limit(1)
                .with_for_update()
            )  # fmt: skip
            if row is None:
                return None
            row.undone_at = utcnow()
            return snapshot(Review, row, group=group)

    def standing_reviews(self, group: str, samples: Sequence[str]) -> dict[str, Review]:
        """The standing review (the latest not undone) of each of ``samples`` that has one:
        what a page of them shows, without reading the group's every review."""
        with self._session() as s:
            rows = list(s.scalars(self._standing(s, group, samples).order_by(ReviewRow.id)))
        return {r.sample: snapshot(Review, r, group=group) for r in rows}  # the latest wins

    def _standing(self, s: Session, group: str, samples: Sequence[str]) -> Select[Any]:
        return select(ReviewRow).where(
            ReviewRow.group_id == self._group_row(s, group).id,
            ReviewRow.sample.in_(list(samples)),
            ReviewRow.undone_at.is_(None),
        )

    def list_reviews(self, group: str, history: bool = False) -> list[Review]:
        """Each sample's standing review (the latest not undone), in sample order; with
        ``history``, every review ever made, undone ones included, oldest first."""
        with self._session() as s:
            q = select(ReviewRow).where(ReviewRow.group_id == self._group_row(s, group).id)
            rows = list(s.scalars(q.order_by(ReviewRow.id)))
        if history:
            return [snapshot(Review, r, group=group) for r in rows]
        standing = {r.sample: r for r in rows if r.undone_at is None}
        return [snapshot(Review, standing[k], group=group) for k in sorted(standing)]
