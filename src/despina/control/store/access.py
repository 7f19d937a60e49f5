"""The store's security half: users, API tokens (hashes only) and the activity log.

Mixed into :class:`despina.control.store.Store`, so one database and one set of
transactions hold both; the rules of the store's docstring apply.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from datetime import datetime, timedelta

from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError as SqlIntegrityError
from sqlalchemy.orm import Session

from despina.control.models import ActivityEntry, TokenInfo, User
from despina.control.store.common import insert_row, snapshot, utcnow
from despina.control.store.tables import ActivityRow, TokenRow, UserRow
from despina.core.errors import ConfigError, ConflictError, NotFoundError
from despina.security.chain import GENESIS, ChainReport, entry_hash, verify_chain
from despina.security.roles import Role
from despina.security.tokens import Scope, hash_token, new_token, new_token_id

BOOTSTRAP_ADMIN = "admin"
_CHAIN_LOCK = 0x0DE5_914A  # the advisory lock id that serializes activity appends


def _user(row: UserRow) -> User:
    return snapshot(User, row, has_password=row.password_hash is not None)


def _token(row: TokenRow, user: UserRow) -> TokenInfo:
    return snapshot(TokenInfo, row, user=user.name, role=user.role, scopes=tuple(row.scopes))


def _entry(row: ActivityRow) -> ActivityEntry:
    return snapshot(ActivityEntry, row)


class AccessStore:
    """Users, tokens and activity; needs the store's ``_session`` transactions."""

    _session: Callable[..., AbstractContextManager[Session]]
    #: The activity log's MAC key (see :mod:`despina.security.chain`); kept out of the
    #: database, given by whoever opens the store to write the log.
    activity_key: bytes | None = None

    # ---- users ----------------------------------------------------------------------
    def create_user(self, name: str, role: Role, password_hash: str | None = None) -> User:
        row = UserRow(name=name, role=role.value, password_hash=password_hash, created_at=utcnow())
        with self._session(write=True) as s:
            insert_row(s, row, f"user {name!r} already exists; pick another name")
            return _user(row)

    def _user_row(self, s: Session, name: str) -> UserRow:
        row = s.scalars(select(UserRow).where(UserRow.name == name)).first()
        if row is None:
            raise NotFoundError(f"no user named {name!r}; list them with: despina user ls")
        return row

    def password_hash(self, name: str) -> str | None:
        with self._session() as s:
            return self._user_row(s, name).password_hash

    def list_users(self) -> list[User]:
        with self._session() as s:
            return [_user(r) for r in s.scalars(select(UserRow).order_by(UserRow.name))]

    def count_users(self) -> int:
        with self._session() as s:
            return int(s.scalar(select(func.count()).select_from(UserRow)) or 0)

    def delete_user(self, name: str) -> None:
        """Remove a user and, with them (ON DELETE CASCADE), every token they hold."""
        with self._session(write=True) as s:
            row = self._user_row(s, name)
            if row.role == Role.ADMIN and self._admins(s) == 1:
                raise ConflictError(f"{name!r} is the last admin; add another admin first")
            s.delete(row)

    def _admins(self, s: Session) -> int:
        q = select(func.count()).select_from(UserRow).where(UserRow.role == Role.ADMIN.value)
        return int(s.scalar(q) or 0)

    # ---- tokens ---------------------------------------------------------------------
    def issue_token(
        self,
        user: str,
        *,
        scopes: tuple[Scope, ...] = (),
        expires_in: timedelta | None = None,
        token: str | None = None,
    ) -> tuple[str, TokenInfo]:
        """A new token for ``user``: returns the token (shown once) and its record."""
        token = token or new_token()
        now = utcnow()
        with self._session(write=True) as s:
            urow = self._user_row(s, user)
            row = TokenRow(
                id=new_token_id(),
                user_id=urow.id,
                hash=hash_token(token),
                scopes=[str(sc) for sc in scopes],
                created_at=now,
                expires_at=now + expires_in if expires_in is not None else None,
            )
            insert_row(s, row, "that token is already in use; generate a new one")
            return token, _token(row, urow)

    def list_tokens(self, user: str | None = None) -> list[TokenInfo]:
        with self._session() as s:
            q = select(TokenRow, UserRow).join(UserRow, TokenRow.user_id == UserRow.id)
            if user is not None:
                q = q.where(UserRow.name == user)
            return [_token(t, u) for t, u in s.execute(q.order_by(TokenRow.created_at))]

    def revoke_token(self, token_id: str) -> TokenInfo:
        with self._session(write=True) as s:
            found = s.execute(
                select(TokenRow, UserRow)
                .join(UserRow, TokenRow.user_id == UserRow.id)
                .where(TokenRow.id == token_id)
            ).first()
            if found is None:
                raise NotFoundError(f"no token {token_id!r}; list them with: despina token ls")
            t, u = found
            if t.revoked_at is None:
                t.revoked_at = utcnow()
            return _token(t, u)

    def token_by_hash(self, token_hash: str) -> TokenInfo | None:
        """The token record with this hash (revoked and expired ones included), or None."""
        with self._session() as s:
            found = s.execute(
                select(TokenRow, UserRow)
                .join(UserRow, TokenRow.user_id == UserRow.id)
                .where(TokenRow.hash == token_hash)
            ).first()
            return None if found is None else _token(*found)

    def bootstrap_admin(self, token: str | None = None) -> str | None:
        """On a store without users: create user ``admin`` and an admin token (``token``
        if given) and return it; None when there are users already."""
        if self.count_users():
            return None
        try:
            self.create_user(BOOTSTRAP_ADMIN, Role.ADMIN)
        except ConflictError:  # another server process won the race
            return None
        return self.issue_token(BOOTSTRAP_ADMIN, token=token)[0]

    # ---- activity -------------------------------------------------------------------
    def record_activity(
        self, actor: str, action: str, target: str, outcome: str, *, at: datetime | None = None
    ) -> ActivityEntry:
        """Append one entry, chained to the last. Appends are serialized: SQLite's write
        lock, PostgreSQL's transaction-scoped advisory lock; a key conflict (another
        database, or a writer that got there first) is retried."""
        key = self._activity_key()
        for attempt in range(20):
            try:
                with self._session(write=True) as s:
                    if s.get_bind().dialect.name == "postgresql":
                        s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _CHAIN_LOCK})
                    last = s.scalars(select(ActivityRow).order_by(ActivityRow.seq.desc())).first()
                    fields = {
                        "seq": 1 if last is None else last.seq + 1,
                        "at": (at or utcnow()).isoformat(timespec="microseconds"),
                        "actor": actor[:63],
                        "action": action[:255],
                        "target": target,
                        "outcome": outcome[:32],
                    }
                    prev = GENESIS if last is None else last.hash
                    row = ActivityRow(**fields, prev_hash=prev, hash=entry_hash(prev, fields, key))
                    s.add(row)
                    s.flush()
                    return _entry(row)
            except SqlIntegrityError:
                time.sleep(random.uniform(0, 0.01 * (attempt + 1)))
        raise ConflictError("could not append to the activity log (too much contention)")

    def verify_activity(self, expect: str | None = None) -> ChainReport:
        """Recompute the chain (see :func:`despina.security.chain.verify_chain`)."""
        entries = (e.model_dump() for e in self.iter_activity())
        return verify_chain(entries, self._activity_key(), expect)

    def _activity_key(self) -> bytes:
        if self.activity_key is None:
            raise ConfigError(
                "this store was opened without the activity log's key; open it through "
                "ControlPlane, or pass activity_key=load_activity_key(HOME / 'activity.key')"
            )
        return self.activity_key

    def list_activity(self, limit: int = 100, offset: int = 0) -> list[ActivityEntry]:
        """Newest first."""
        with self._session() as s:
            q = select(ActivityRow).order_by(ActivityRow.seq.desc()).limit(limit).offset(offset)
            return [_entry(r) for r in s.scalars(q)]

    def iter_activity(self, batch: int = 1000) -> Iterator[ActivityEntry]:
        """Every entry, oldest first, in batches (for verification)."""
        after = 0
        while True:
            with self._session() as s:
                q = select(ActivityRow).where(ActivityRow.seq > after)
                rows = list(s.scalars(q.order_by(ActivityRow.seq).limit(batch)))
            if not rows:
                return
            yield from (_entry(r) for r in rows)
            after = rows[-1].seq
