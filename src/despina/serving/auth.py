"""Authentication, authorization, rate limiting and the activity log, for every route.

One ASGI middleware (:class:`AuthGuard`) sits in front of the whole app, so no route,
including ones added later, the OpenAPI spec and unknown paths, is reachable without a
token: only ``/health`` (and ``/metrics`` when ``DESPINA_METRICS_PUBLIC`` is set) are open.
``POST /v1/login`` trades a user's password for a short-lived token.
What each route needs is one table, :data:`POLICY`; a route missing from it is refused
to everyone but admins (deny by default), and the route matrix test fails.

- 401: no token, or an unknown, expired or revoked one (``WWW-Authenticate: Bearer``).
- 403: a valid token whose role or scope does not allow the route.
- 429: a client with too many failures in the window (``Retry-After``).

Every mutating request, allowed or refused, is appended to the hash-chained activity log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

import anyio
from starlette.responses import Response
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from despina.control.store.access import AccessStore
from despina.core.errors import (
    AuthError,
    ConfigError,
    DespinaError,
    ForbiddenError,
    RateLimitedError,
)
from despina.security.ratelimit import FailureLimiter
from despina.security.roles import Permission, Principal, Role
from despina.security.tokens import Scope as TokenScope
from despina.security.tokens import hash_token
from despina.serving.errors import error_response
from despina.serving.sessions import (
    LOGIN_PATH,
    STATIC_PREFIX,
    csrf_ok,
    is_console,
    login_redirect,
    session_cookie,
)
from despina.serving.settings import AuthSettings

logger = logging.getLogger(__name__)

READ, OPERATE, PREDICT, ADMIN = (
    Permission.READ,
    Permission.OPERATE,
    Permission.PREDICT,
    Permission.ADMIN,
)


@dataclass(frozen=True)
class Rule:
    """What a route needs: a permission, and which resource it names (for scoped tokens):
    ``kind`` group/deployment/task and the path (or ``?query``) parameter holding it."""

    permission: Permission
    kind: str | None = None
    param: str | None = None
    mutating: bool = False


def _op(kind: str | None = None, param: str | None = None) -> Rule:
    return Rule(OPERATE, kind, param, mutating=True)


POLICY: dict[tuple[str, str], Rule] = {
    ("GET", "/ready"): Rule(READ),
    ("GET", "/metrics"): Rule(READ),
    ("GET", "/openapi.json"): Rule(READ),
    ("GET", "/docs"): Rule(READ),
    ("GET", "/docs/oauth2-redirect"): Rule(READ),
    ("GET", "/redoc"): Rule(READ),
    ("GET", "/v1/whoami"): Rule(Permission.AUTHENTICATED),
    # the web console (console.py): its pages read and its buttons operate, as the API's
    ("GET", "/"): Rule(Permission.AUTHENTICATED),
    ("POST", "/ui/logout"): Rule(Permission.AUTHENTICATED, mutating=True),
    ("GET", "/ui/"): Rule(READ),
    ("GET", "/ui/groups/{name}"): Rule(READ, "group", "name"),
    ("GET", "/ui/groups/{name}/stream"): Rule(READ, "group", "name"),
    ("POST", "/ui/groups/{name}/retry"): _op("group", "name"),
    ("GET", "/ui/tasks/{task_id}"): Rule(READ, "task", "task_id"),
    ("GET", "/ui/tasks/{task_id}/log"): Rule(READ, "task", "task_id"),
    ("POST", "/ui/tasks/{task_id}/cancel"): _op("task", "task_id"),
    ("POST", "/ui/tasks/{task_id}/retry"): _op("task", "task_id"),
    ("GET", "/ui/audits"): Rule(READ),
    ("GET", "/ui/audits/{name}"): Rule(READ, "group", "name"),
    ("GET", "/ui/audits/{name}/image"): Rule(READ, "group", "name"),
    ("GET", "/ui/audits/{name}/sample"): Rule(READ, "group", "name"),
    ("GET", "/ui/audits/{name}/map.json"): Rule(READ, "group", "name"),
    ("POST", "/ui/audits/{name}/reviews"): _op("group", "name"),
    ("POST", "/ui/audits/{name}/reviews/bulk"): _op("group", "name"),
    ("POST", "/ui/audits/{name}/reviews/undo"): _op("group", "name"),
    ("GET", "/ui/studies/{name}"): Rule(READ, "group", "name"),
    ("GET", "/ui/studies/{name}/trials"): Rule(READ, "group", "name"),
    ("GET", "/ui/deployments/{name}"): Rule(READ, "deployment", "name"),
    ("GET", "/ui/deployments/{name}/stream"): Rule(READ, "deployment", "name"),
    # clusters
    ("POST", "/v1/clusters"): _op(),
    ("GET", "/v1/clusters"): Rule(READ),
    ("GET", "/v1/clusters/{name}"): Rule(READ),
    ("DELETE", "/v1/clusters/{name}"): _op(),
    # task groups
    ("POST", "/v1/groups"): _op(),
    ("GET", "/v1/groups"): Rule(READ),
    ("GET", "/v1/groups/{name}"): Rule(READ, "group", "name"),
    ("GET", "/v1/groups/{name}/env"): Rule(OPERATE, "group", "name"),
    ("DELETE", "/v1/groups/{name}"): _op("group", "name"),
    ("POST", "/v1/groups/{name}/start"): _op("group", "name"),
    ("GET", "/v1/groups/{name}/status"): Rule(READ, "group", "name"),
    ("POST", "/v1/groups/{name}/retry"): _op("group", "name"),
    ("GET", "/v1/groups/{name}/result"): Rule(READ, "group", "name"),
    ("GET", "/v1/groups/{name}/reviews"): Rule(READ, "group", "name"),
    # tasks (scoped through their group)
    ("GET", "/v1/tasks"): Rule(READ, "group", "?group"),
    ("GET", "/v1/tasks/{task_id}"): Rule(READ, "task", "task_id"),
    ("POST", "/v1/tasks/{task_id}/cancel"): _op("task", "task_id"),
    ("POST", "/v1/tasks/{task_id}/retry"): _op("task", "task_id"),
    ("GET", "/v1/tasks/{task_id}/logs"): Rule(READ, "task", "task_id"),
    # deployments
    ("GET", "/v1/deployments"): Rule(READ),
    ("POST", "/v1/deployments"): _op(),
    ("GET", "/v1/deployments/{name}"): Rule(READ, "deployment", "name"),
    ("DELETE", "/v1/deployments/{name}"): _op("deployment", "name"),
    ("POST", "/v1/deployments/{name}/predict"): Rule(PREDICT, "deployment", "name"),
    ("POST", "/v1/deployments/{name}/predict-batch"): Rule(PREDICT, "deployment", "name"),
    ("GET", "/v1/deployments/{name}/drift"): Rule(READ, "deployment", "name"),
    # users, tokens, activity
    ("GET", "/v1/users"): Rule(ADMIN),
    ("POST", "/v1/users"): Rule(ADMIN, mutating=True),
    ("DELETE", "/v1/users/{name}"): Rule(ADMIN, mutating=True),
    ("GET", "/v1/tokens"): Rule(ADMIN),
    ("POST", "/v1/tokens"): Rule(ADMIN, mutating=True),
    ("DELETE", "/v1/tokens/{token_id}"): Rule(ADMIN, mutating=True),
    ("GET", "/v1/events"): Rule(ADMIN),
    ("GET", "/v1/events/verify"): Rule(ADMIN),
}
# Reachable without a token: liveness, and trading a password for a token (the login
# route limits and logs its own failures).
OPEN_ROUTES = frozenset({("GET", "/health"), ("POST", "/v1/login"), ("GET", LOGIN_PATH),
                         ("POST", LOGIN_PATH), ("GET", STATIC_PREFIX + "{name}")})  # fmt: skip
OPEN_PATHS = frozenset(path for _, path in OPEN_ROUTES)


# A cached check: valid until (monotonic), the principal or None, its expiry, why refused.
_Hit = tuple[float, Principal | None, datetime | None, str]


class Authenticator:
    """Token → principal, with a short cache so a request costs one hash, not a query.

    A revocation through this process's API takes effect at once (:meth:`forget`); one
    made elsewhere (the CLI on the same store) within ``cache_s`` seconds.
    """

    def __init__(self, store: AccessStore, settings: AuthSettings | None = None) -> None:
        self.store = store
        self.settings = settings or AuthSettings()
        self.limiter = FailureLimiter(self.settings.fail_limit, self.settings.fail_window_s)
        self._cache: dict[str, _Hit] = {}
        self._lock = threading.Lock()

    def forget(self) -> None:
        with self._lock:
            self._cache.clear()

    def cached(self, token: str) -> Principal | None:
        """The verdict from the cache alone (no database call: safe on the event loop):
        the principal, AuthError for a known-bad token, None when it must be looked up."""
        hit = self._fresh(hash_token(token))
        return None if hit is None else self._verdict(hit)

    def authenticate(self, token: str) -> Principal:
        """The principal of ``token``; AuthError saying why not (unknown/expired/revoked)."""
        h = hash_token(token)
        return self._verdict(self._fresh(h) or self._load(h))

    def _fresh(self, h: str) -> _Hit | None:
        with self._lock:
            hit = self._cache.get(h)
        return hit if hit is not None and hit[0] >= time.monotonic() else None

    def _load(self, h: str) -> _Hit:
        until = time.monotonic() + self.settings.cache_s
        info = self.store.token_by_hash(h)
        if info is None:
            hit: _Hit = (until, None, None, "unknown token")
        elif info.revoked_at is not None:
            hit = (until, None, None, f"token {info.id} was revoked")
        else:
            scopes = tuple(TokenScope.parse(s) for s in info.scopes)
            principal = Principal(info.user, Role.parse(info.role), info.id, scopes)
            hit = (until, principal, info.expires_at, "")
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[h] = hit
        return hit

    @staticmethod
    def _verdict(hit: _Hit) -> Principal:
        _, principal, expires_at, why = hit
        if principal is None:
            raise AuthError(f"{why}; ask an admin for a token (despina token create)")
        if expires_at is not None and expires_at <= datetime.now(UTC):
            raise AuthError(f"token {principal.token_id} expired at {expires_at:%Y-%m-%d %H:%M}Z")
        return principal


def bearer(scope: Scope) -> str | None:
    for key, value in scope["headers"]:
        if key == b"authorization":
            kind, _, token = value.decode("latin-1").partition(" ")
            return token.strip() if kind.lower() == "bearer" and token.strip() else None
    return None


def match_route(app: Any, scope: Scope) -> tuple[str | None, dict[str, Any]]:
    """The path template of the route that will answer, and its path parameters."""
    for route in app.router.routes:
        match, child = route.matches(scope)
        if match is Match.FULL:
            return getattr(route, "path", None), child.get("path_params", {})
    return None, {}


class AuthGuard:
    """The ASGI middleware (see the module docstring)."""

    def __init__(
        self,
        app: ASGIApp,
        auth: Authenticator,
        resolve_task_group: Callable[[int], str | None] | None = None,
    ) -> None:
        self.app = app
        self.auth = auth
        self.resolve_task_group = resolve_task_group
        # Token hash -> the store lookup in flight for it (see _principal).
        self._lookups: dict[str, asyncio.Future[Principal]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] == "/health":
            await self.app(scope, receive, send)
            return
        client = (scope.get("client") or ("unknown", 0))[0]
        wait = self.auth.limiter.retry_after(client)
        if wait:  # every route but /health, the open login route included
            msg = f"too many failed attempts from {client}; wait {wait:.0f}s"
            await error_response(RateLimitedError(msg, wait))(scope, receive, send)
            return
        path = scope["path"]
        if (
            path in OPEN_PATHS
            or path.startswith(STATIC_PREFIX)
            or (path == "/metrics" and self.auth.settings.metrics_public)
        ):
            await self.app(scope, receive, send)
            return
        method = "GET" if scope["method"] == "HEAD" else scope["method"]
        template, params = match_route(scope["app"], scope)
        rule = POLICY.get((method, template or ""))
        mutating = rule.mutating if rule is not None else method not in ("GET", "OPTIONS")
        actor = "anonymous"
        token, console = bearer(scope), is_console(path)
        session = session_cookie(scope) if token is None and console else None
        try:
            principal = await self._checked(token or session, client)
            actor = principal.user
            scope.setdefault("state", {})["principal"] = principal
            if session is not None and mutating and not csrf_ok(scope, session):
                raise ForbiddenError(
                    "this console request has no valid CSRF token: reload the page and retry"
                )
            if template is not None:
                await self._authorize(principal, rule, params, scope)
        except DespinaError as exc:
            if mutating:  # in the log before the client hears the answer
                await self._record(actor, method, template, scope, str(exc.http_status))
            if console and isinstance(exc, AuthError) and exc.http_status == 401:
                why = str(exc) if token or session else ""
                status, headers = login_redirect(scope, why)
                await Response(status_code=status, headers=headers)(scope, receive, send)
                return
            await error_response(exc)(scope, receive, send)
            return
        if not mutating:
            await self.app(scope, receive, send)
            return
        recorded = False

        async def sending(message: Message) -> None:
            nonlocal recorded
            if message["type"] == "http.response.start":
                recorded = True
                await self._record(actor, method, template, scope, str(message["status"]))
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            if not recorded:  # the app failed before answering
                await self._record(actor, method, template, scope, "500")

    async def _checked(self, token: str | None, client: str) -> Principal:
        """The principal of ``token``. A token the cache knows to be valid costs nothing;
        any other check counts as an attempt of ``client`` before it runs (the limiter's
        begin/end), so concurrent bad tokens cannot all get past the limit at once."""
        if token is not None:
            with contextlib.suppress(AuthError):
                known = self.auth.cached(token)
                if known is not None:
                    return known
        wait = self.auth.limiter.begin(client)
        if wait:
            raise RateLimitedError(
                f"too many failed attempts from {client}; wait {wait:.0f}s", wait
            )
        ok = False
        try:
            if token is None:
                raise AuthError("this route needs a token: send 'Authorization: Bearer TOKEN'")
            principal = await self._principal(token)
            ok = True
            return principal
        finally:
            self.auth.limiter.end(client, ok)

    async def _principal(self, token: str) -> Principal:
        """The principal of a token the cache could not vouch for (see :meth:`_checked`): from
        the store on a thread, one lookup per token however many requests wait for it. When a
        token's cache entry expired under load, every request in flight with it missed at
        once: at concurrency 32 each server process ran 16 store queries on 16 threads
        every ``cache_s`` seconds, opening SQLite connections beyond the pool's. Sharing
        the lookup avoids that (docs/benchmarks.md, serving)."""
        key = hash_token(token)
        lookup = self._lookups.get(key)
        if lookup is None:
            lookup = asyncio.ensure_future(anyio.to_thread.run_sync(self.auth.authenticate, token))
            self._lookups[key] = lookup

            def done(f: asyncio.Future[Principal]) -> None:
                del self._lookups[key]
                if not f.cancelled():
                    f.exception()  # marked retrieved: the waiters raise it, or have left

            lookup.add_done_callback(done)
        # Shielded: a client that hangs up does not cancel the others' lookup.
        return await asyncio.shield(lookup)

    async def _authorize(
        self, p: Principal, rule: Rule | None, params: dict[str, Any], scope: Scope
    ) -> None:
        if rule is None:  # a route nobody wrote a rule for: admins only
            if p.role is not Role.ADMIN:
                raise ForbiddenError("no access rule covers this route; only admins may use it")
            return
        kind, name = rule.kind, None
        if rule.param is not None and rule.param.startswith("?"):
            name = _query(scope, rule.param[1:])  # read (and checked once) for everyone
        if rule.param is not None and p.scopes:
            if not rule.param.startswith("?"):
                name = str(params.get(rule.param, ""))
            if kind == "task" and name and self.resolve_task_group is not None:
                kind = "group"
                name = await anyio.to_thread.run_sync(self._task_group, name)
        if not p.allows(rule.permission, kind, name):
            what = f"{rule.permission.value}" + (f" on {kind} {name}" if name else "")
            raise ForbiddenError(
                f"{p.user} ({p.role.value}{', scoped' if p.scopes else ''}) may not {what}"
            )

    def _task_group(self, task_id: str) -> str | None:
        try:
            return self.resolve_task_group(int(task_id)) if self.resolve_task_group else None
        except (ValueError, DespinaError):
            return None

    async def _record(
        self, actor: str, method: str, template: str | None, scope: Scope, outcome: str
    ) -> None:
        action = f"{method} {template or scope['path']}"
        try:
            await anyio.to_thread.run_sync(
                self.auth.store.record_activity, actor, action, scope["path"], outcome
            )
        except Exception:  # the request already happened; never hide it silently
            logger.exception("could not write the activity log entry for %s", action)


def _query(scope: Scope, key: str) -> str | None:
    """The one value of query parameter ``key``, decoded as the route decodes it; a
    parameter given twice is refused, since the guard and the route could read different
    ones (the scope check the first, the route the last)."""
    query = scope.get("query_string", b"").decode("latin-1")
    values = [v for k, v in parse_qsl(query, keep_blank_values=True) if k == key]
    if len(values) > 1:
        raise ConfigError(f"query parameter {key!r} is given {len(values)} times; give it once")
    return values[0] if values else None
