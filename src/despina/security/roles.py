"""Roles, permissions and the principal a request acts as.

=========  ====================================================================
admin      everything, including users, tokens and the activity log
operator   clusters, task groups, tasks and deployments (read, change, predict)
viewer     read only
predictor  predict on deployments (those it is scoped to, when scoped)
=========  ====================================================================

A token's scopes narrow what its role allows to the named task groups or deployments;
an unscoped token reaches everything its role does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from despina.core.errors import ConfigError
from despina.security.tokens import Scope


class Role(StrEnum):
    ADMIN = "admin"
    OPERATOR = "operator"
    VIEWER = "viewer"
    PREDICTOR = "predictor"

    @classmethod
    def parse(cls, text: str) -> Role:
        try:
            return cls(text)
        except ValueError:
            names = ", ".join(r.value for r in cls)
            raise ConfigError(f"unknown role {text!r}: use one of {names}") from None


class Permission(StrEnum):
    AUTHENTICATED = "authenticated"  # any valid token (whoami)
    READ = "read"
    OPERATE = "operate"
    PREDICT = "predict"
    ADMIN = "admin"


GRANTS: dict[Role, frozenset[Permission]] = {
    Role.ADMIN: frozenset(Permission),
    Role.OPERATOR: frozenset(
        {Permission.AUTHENTICATED, Permission.READ, Permission.OPERATE, Permission.PREDICT}
    ),
    Role.VIEWER: frozenset({Permission.AUTHENTICATED, Permission.READ}),
    Role.PREDICTOR: frozenset({Permission.AUTHENTICATED, Permission.PREDICT}),
}


@dataclass(frozen=True)
class Principal:
    """Who a request acts as: a user, their role and the token's scopes."""

    user: str
    role: Role
    token_id: str
    scopes: tuple[Scope, ...] = field(default=())

    def allows(
        self, permission: Permission, kind: str | None = None, name: str | None = None
    ) -> bool:
        """May this principal use ``permission`` on the resource ``kind:name``?

        ``kind`` None means a route that names no single resource (a listing, a create):
        scoped tokens may not use those, since they would reach beyond their scope.
        """
        if permission not in GRANTS[self.role]:
            return False
        if not self.scopes or permission is Permission.AUTHENTICATED:
            return True
        if kind is None or name is None:
            return False
        return any(s.kind == kind and s.name == name for s in self.scopes)
