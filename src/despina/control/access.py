"""Users, tokens and the activity log on the embedded store: whoever opens the local
store acts as its admin, and every change is recorded as ``local:USER``.

Mixed into :class:`despina.control.plane.ControlPlane` (the server's admin routes do the
same through the API, see :mod:`despina.serving.admin_routes`).
"""

from __future__ import annotations

from typing import Any

from despina.control.models import ActivityEntry, TokenInfo, User, UserSpec
from despina.control.store import Store
from despina.security.passwords import hash_password
from despina.security.roles import Role
from despina.security.tokens import Scope, parse_duration


class AccessAdmin:
    """Needs the plane's ``store``."""

    store: Store

    def _record(self, action: str, target: str) -> None:
        import getpass

        self.store.record_activity(f"local:{getpass.getuser()}", action, target, "ok")

    def create_user(self, name: str, role: str, password: str | None = None) -> User:
        spec = UserSpec(name=name, role=Role.parse(role))
        pw_hash = hash_password(password) if password is not None else None
        user = self.store.create_user(spec.name, spec.role, pw_hash)
        self._record("user add", f"{name} ({role})")
        return user

    def list_users(self) -> list[User]:
        return self.store.list_users()

    def delete_user(self, name: str) -> None:
        self.store.delete_user(name)
        self._record("user rm", name)

    def create_token(
        self, user: str, expires: str | None = None, scopes: tuple[str, ...] = ()
    ) -> tuple[str, TokenInfo]:
        token, info = self.store.issue_token(
            user,
            scopes=tuple(Scope.parse(s) for s in scopes),
            expires_in=parse_duration(expires) if expires else None,
        )
        self._record("token create", f"{info.id} for {user}")
        return token, info

    def list_tokens(self, user: str | None = None) -> list[TokenInfo]:
        return self.store.list_tokens(user)

    def revoke_token(self, token_id: str) -> TokenInfo:
        info = self.store.revoke_token(token_id)
        self._record("token revoke", token_id)
        return info

    def list_events(self, limit: int = 100, offset: int = 0) -> list[ActivityEntry]:
        return self.store.list_activity(limit, offset)

    def verify_events(self, expect: str | None = None) -> dict[str, Any]:
        return self.store.verify_activity(expect).__dict__
