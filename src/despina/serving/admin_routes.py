"""Routes of users, tokens and the activity log (admins only, see :data:`auth.POLICY`),
and ``/v1/whoami`` for any valid token."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import Field

from despina.control.models import ActivityEntry, TokenInfo, User
from despina.core.config import FrozenModel
from despina.core.errors import AuthError
from despina.security.chain import verify_chain
from despina.security.roles import Role
from despina.security.tokens import Scope, parse_duration
from despina.serving.auth import Authenticator


class UserSpec(FrozenModel):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,62}$")
    role: Role


class TokenSpec(FrozenModel):
    user: str
    expires: str | None = Field(None, description="lifetime such as 30d or 12h; none: no expiry")
    scopes: tuple[str, ...] = Field((), description="group:NAME or deployment:NAME")


class NewToken(TokenInfo):
    token: str = Field(description="shown once; Despina keeps only its hash")


def admin_router(auth: Authenticator) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["access"])
    store = auth.store

    @router.get("/whoami")
    def whoami(request: Request) -> dict[str, Any]:
        p = request.scope.get("state", {}).get("principal")
        if p is None:
            raise AuthError("authentication is off on this server")
        return {"user": p.user, "role": p.role, "token": p.token_id, "scopes": p.scopes}

    @router.get("/users")
    def list_users() -> list[User]:
        return store.list_users()

    @router.post("/users", status_code=201)
    def create_user(spec: UserSpec) -> User:
        return store.create_user(spec.name, spec.role)

    @router.delete("/users/{name}", status_code=204)
    def delete_user(name: str) -> None:
        store.delete_user(name)
        auth.forget()

    @router.get("/tokens")
    def list_tokens(user: str | None = None) -> list[TokenInfo]:
        return store.list_tokens(user)

    @router.post("/tokens", status_code=201)
    def create_token(spec: TokenSpec) -> NewToken:
        token, info = store.issue_token(
            spec.user,
            scopes=tuple(Scope.parse(s) for s in spec.scopes),
            expires_in=parse_duration(spec.expires) if spec.expires else None,
        )
        return NewToken(token=token, **info.model_dump())

    @router.delete("/tokens/{token_id}")
    def revoke_token(token_id: str) -> TokenInfo:
        info = store.revoke_token(token_id)
        auth.forget()
        return info

    @router.get("/events")
    def list_events(
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        offset: Annotated[int, Query(ge=0, le=2**62)] = 0,
    ) -> list[ActivityEntry]:
        return store.list_activity(limit, offset)

    @router.get("/events/verify")
    def verify_events() -> dict[str, Any]:
        report = verify_chain(e.model_dump() for e in store.iter_activity())
        return report.__dict__

    return router
