"""Rendering the console's pages and fragments (Jinja2, autoescaped: names, paths and
logs are shown as text, never run)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, StreamingResponse
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
        # despina serve's console has its deployment's page alone: no overview, no audits
        whole=getattr(request.app.state, "control_plane", False),
        csrf=csrf_token(session) if session else "",
        **values,
    )
    return HTMLResponse(html)


def fragment(name: str, **values: Any) -> str:
    """A part of a page, for htmx to swap in."""
    return _templates.get_template(name).render(**values)


def may_operate(request: Request, group: str) -> bool:
    """Whether the request's principal may press the buttons of ``group`` (its tasks, its
    audit's reviews): the pages show only those."""
    principal = principal_of(request)
    return principal is not None and principal.allows(Permission.OPERATE, "group", group)


#: How long one live stream lasts before the browser reconnects (htmx's SSE extension
#: does it on its own).
STREAM_S = 300.0


def sse_stream(
    request: Request, event: str, produce: Callable[[], Awaitable[str | None]], every: float
) -> StreamingResponse:
    """A server-sent-events stream: every ``every`` seconds, ``produce()``'s HTML as
    ``event`` (nothing when it gives None), until the browser leaves."""

    async def events() -> AsyncIterator[str]:
        until = time.monotonic() + STREAM_S
        while time.monotonic() < until and not await request.is_disconnected():
            html = await produce()
            if html is not None:
                lines = html.splitlines() or [""]
                yield f"event: {event}\n" + "".join(f"data: {x}\n" for x in lines) + "\n"
            await asyncio.sleep(every)

    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    return StreamingResponse(events(), media_type="text/event-stream", headers=headers)
