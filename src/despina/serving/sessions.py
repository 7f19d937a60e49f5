"""Browser sessions of the web console: the cookie that holds a session's token, the CSRF
token derived from it, and which paths are the console's (the only ones where the cookie
counts: the JSON API takes ``Authorization: Bearer`` alone, so no other site can ride a
browser's session into it)."""

from __future__ import annotations

import hashlib
import hmac
from http.cookies import CookieError, SimpleCookie
from urllib.parse import urlencode

from starlette.types import Scope

SESSION_COOKIE = "despina_session"
CSRF_HEADER = b"x-csrf-token"
LOGIN_PATH = "/ui/login"
STATIC_PREFIX = "/ui/static/"


def is_console(path: str) -> bool:
    """Whether ``path`` is a console page."""
    return path in ("/", "/ui") or path.startswith("/ui/")


def csrf_token(session: str) -> str:
    """A session's CSRF token: derived from its secret token, which only the HttpOnly
    cookie holds, so another site can neither read nor forge it."""
    return hashlib.sha256(b"despina-csrf\0" + session.encode()).hexdigest()


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def session_cookie(scope: Scope) -> str | None:
    """The session token the request's cookie carries, if any."""
    raw = _header(scope, b"cookie")
    if not raw:
        return None
    try:
        morsel = SimpleCookie(raw).get(SESSION_COOKIE)
    except CookieError:
        return None
    return morsel.value if morsel is not None and morsel.value else None


def csrf_ok(scope: Scope, session: str) -> bool:
    """Whether the request carries ``session``'s CSRF token."""
    sent = _header(scope, CSRF_HEADER) or ""
    return hmac.compare_digest(sent.encode(), csrf_token(session).encode())


def login_redirect(scope: Scope, why: str) -> tuple[int, dict[str, str]]:
    """Where a console request without a valid session goes: 303 to the sign-in page
    (back to this page after), or, for an htmx request, 401 with ``HX-Redirect``."""
    back = scope["path"] if scope["method"] == "GET" and scope["path"] != "/" else "/ui/"
    query = {"next": back, **({"why": why} if why else {})}
    target = f"{LOGIN_PATH}?{urlencode(query)}"
    if _header(scope, b"hx-request"):
        return 401, {"HX-Redirect": target}
    return 303, {"Location": target}
