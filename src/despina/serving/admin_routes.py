"""Routes of users, tokens and the activity log (admins only, see :data:`auth.POLICY`),
and ``/v1/whoami`` for any valid token."""

from __future__ import annotations

import contextlib
import functools
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import Field

from despina.control.models import ActivityEntry, TokenInfo, User, UserSpec
from despina.core.config import FrozenModel
from despina.core.errors import AuthError, ConfigError, NotFoundError, RateLimitedError
from despina.security.passwords import hash_password, verify_password
from despina.security.tokens import Scope, parse_duration
from despina.serving.auth import Authenticator


class TokenSpec(FrozenModel):
    user: str
    expires: str | None = Field(None, description="lifetime such as 30d or 12h; none: no expiry")
    scopes: tuple[str, ...] = Field((), description="group:NAME or deployment:NAME")


class LoginSpec(FrozenModel):
    user: str = Field(max_length=63)
    password: str = Field(max_length=1024)
    expires: str = Field("12h", description="the token's lifetime, at most 30d")


class NewToken(TokenInfo):
    token: str = Field(description="shown once; Despina keeps only its hash")


def _background_priority() -> None:
    """Run this thread at the lowest CPU priority (Linux: a thread's nice value is its
    own), so a flood of password checks never starves the event loop that answers
    everything else."""
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)


#: Password checks that may run at once: Argon2id takes tens of MiB and a core each, so
#: a flood of logins queues here instead of taking the server's memory and CPU.
HASHING = ThreadPoolExecutor(2, "password-check", initializer=_background_priority)


@functools.cache
def _dummy_hash() -> str:
    return hash_password("not anyone's password")


def password_login(
    auth: Authenticator, user: str, password: str, client: str, lifetime: timedelta, route: str
) -> tuple[str, TokenInfo]:
    """A new token of ``lifetime`` for ``user`` if ``password`` is theirs (Argon2id on the
    password pool; a failure counts towards ``client``'s limit and lands in the activity
    log as ``POST route``); else :class:`AuthError`."""
    store = auth.store
    wait = auth.limiter.begin(client)  # counted before the check, as the guard does
    if wait:
        raise RateLimitedError(f"too many failed attempts from {client}; wait {wait:.0f}s", wait)
    ok = False
    try:
        try:
            stored = store.password_hash(user)
        except NotFoundError:
            stored = None
        # A missing user costs the same Argon2 check as a wrong password (no timing
        # tell); at most a few checks at once, each taking tens of MiB.
        check = HASHING.submit(verify_password, stored or _dummy_hash(), password)
        ok = check.result() and bool(stored)
    finally:
        auth.limiter.end(client, ok)
    if not ok:
        store.record_activity("anonymous", f"POST {route}", f"{route} as {user}", "401")
        raise AuthError("wrong user name or password (or the user has no password)")
    token, info = store.issue_token(user, expires_in=lifetime)
    store.record_activity(user, f"POST {route}", f"{route} ({info.id})", "201")
    return token, info


def admin_router(auth: Authenticator) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["access"])
    store = auth.store

    @router.get("/whoami")
    def whoami(request: Request) -> dict[str, Any]:
        p = request.scope.get("state", {}).get("principal")
        if p is None:
            raise AuthError("authentication is off on this server")
        return {"user": p.user, "role": p.role, "token": p.token_id, "scopes": p.scopes}

    @router.post("/login", status_code=201)
    def login(spec: LoginSpec, request: Request) -> NewToken:
        """A user's password for a token (Argon2id check; failures count towards the 429
        the guard answers)."""
        client = request.client.host if request.client else "unknown"
        lifetime = parse_duration(spec.expires)
        if lifetime > timedelta(days=30):
            raise ConfigError("a login token lives at most 30d; use despina token create")
        token, info = password_login(auth, spec.user, spec.password, client, lifetime, "/v1/login")
        return NewToken(token=token, **info.model_dump())

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
    def verify_events(
        expect: Annotated[str | None, Query(pattern="^[0-9a-f]{64}$")] = None,
    ) -> dict[str, Any]:
        return store.verify_activity(expect).__dict__

    return router
