"""Rendering the console's pages and fragments (Jinja2, autoescaped: names, paths and
logs are shown as text, never run)."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, select_autoescape

from despina.security.roles import Permission, Principal
from despina.serving.sessions import SESSION_COOKIE, csrf_token

_templates = Environment(
    loader=PackageLoader("despina.serving", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
)


def principal_of(request: Request) -> Principal | None:
    """Who the request acts as (the guard put it there)."""
    found: Principal | None = request.scope.get("state", {}).get("principal")
    return found


def page(name: str, request: Request, **values: Any) -> HTMLResponse:
    """A whole page: the layout with who is signed in and the session's CSRF token."""
    principal = principal_of(request)
    session = request.cookies.get(SESSION_COOKIE, "")
    html = _templates.get_template(name).render(
        principal=principal,
        csrf=csrf_token(session) if session else "",
        can_operate=principal is not None and principal.allows(Permission.OPERATE),
        **values,
    )
    return HTMLResponse(html)


def fragment(name: str, **values: Any) -> str:
    """A part of a page, for htmx to swap in."""
    return _templates.get_template(name).render(**values)
