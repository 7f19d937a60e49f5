"""The web console: server-rendered pages (Jinja2) under ``/ui``, made live with htmx and
server-sent events; ``/`` leads to it.

A browser signs in at ``/ui/login`` with a password (a short-lived token, as
``POST /v1/login`` gives) or a token; the token lives in an HttpOnly, SameSite=Strict
cookie (Secure under TLS) that only ``/ui`` paths accept. The guard
(:mod:`despina.serving.auth`) checks every page as it checks the API, and a state-changing
console request must carry the session's CSRF token in ``X-CSRF-Token`` (htmx sends it
from the page). Buttons a principal may not press are not shown.
"""

from __future__ import annotations

from datetime import timedelta
from importlib import resources
from typing import Annotated, Any
from urllib.parse import quote

import anyio
from fastapi import APIRouter, Form, Query, Request
from fastapi import Path as FastPath
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse

import despina
from despina.control.models import Task
from despina.control.plane import ControlPlane
from despina.core.errors import AuthError, NotFoundError
from despina.serving.admin_routes import password_login
from despina.serving.auth import Authenticator
from despina.serving.console_pages import fragment, may_operate, page, sse_stream
from despina.serving.sessions import SESSION_COOKIE

#: How long a password sign-in lasts.
SESSION_LIFETIME = timedelta(hours=8)
#: How often a live page's stream looks at the store.
POLL_S = 0.25
#: The most log bytes one server-sent event carries: a long log arrives in pieces.
LOG_EVENT_BYTES = 64 * 1024
STATIC = {  # the vendored scripts (BSD Zero Clause, see static/LICENSE-htmx), and ours
    "htmx.min.js": "htmx-2.0.8.min.js",
    "sse.min.js": "htmx-ext-sse-2.2.4.min.js",
    "console.js": "console.js",
}
TaskId = Annotated[int, FastPath(ge=1, le=2**62)]
StateQuery = Annotated[
    str | None, Query(pattern="^(PENDING|RUNNING|RETRYING|SUCCEEDED|FAILED|CANCELLED)$")
]
#: The latest task state changes the overview lists.
EVENTS_SHOWN = 10
#: The most tasks a group's page lists (its counts cover all of them).
TASKS_SHOWN = 200


def signin_router(auth: Authenticator) -> APIRouter:
    """What every console needs, the control plane's or ``despina serve``'s: ``/``, the
    scripts, signing in and out."""
    router = APIRouter(include_in_schema=False)

    @router.get("/")
    def root() -> RedirectResponse:
        return RedirectResponse("/ui/", status_code=303)

    @router.get("/ui/static/{name}")
    def static(name: str) -> Response:
        if name not in STATIC:
            raise NotFoundError(f"no static file {name}")
        data = resources.files("despina.serving").joinpath("static", STATIC[name]).read_bytes()
        headers = {"Cache-Control": "public, max-age=86400"}
        return Response(data, media_type="text/javascript", headers=headers)

    @router.get("/ui/login")
    def login_page(request: Request, next: str = "/ui/", why: str = "") -> HTMLResponse:
        return page("console/login.html", request, next=_local(next), why=why[:200])

    @router.post("/ui/login")
    def login(
        request: Request,
        user: Annotated[str, Form(max_length=63)] = "",
        password: Annotated[str, Form(max_length=1024)] = "",
        token: Annotated[str, Form(max_length=512)] = "",
        next: Annotated[str, Form(max_length=2048)] = "/ui/",
    ) -> Response:
        client = request.client.host if request.client else "unknown"
        if not token and not (user and password):
            refused = page("console/login.html", request, next=_local(next),
                           why="give a user and a password, or a token")  # fmt: skip
            refused.status_code = 422
            return refused
        try:
            if token:
                auth.authenticate(token.strip())  # refuses unknown, expired or revoked
                session, max_age = token.strip(), None
            else:
                session, _ = password_login(
                    auth, user, password, client, SESSION_LIFETIME, "/ui/login"
                )
                max_age = int(SESSION_LIFETIME.total_seconds())
        except AuthError as exc:
            refused = page("console/login.html", request, next=_local(next), why=str(exc))
            refused.status_code = exc.http_status
            return refused
        response = RedirectResponse(_local(next), status_code=303)
        response.set_cookie(
            SESSION_COOKIE, session, max_age=max_age, path="/", httponly=True,
            secure=request.url.scheme == "https", samesite="strict",
        )  # fmt: skip
        return response

    @router.post("/ui/logout")
    def logout(request: Request) -> Response:
        if request.headers.get("hx-request"):  # htmx follows a 303 itself: tell it instead
            response: Response = Response(headers={"HX-Redirect": "/ui/login"})
        else:
            response = RedirectResponse("/ui/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    return router


def console_router(plane: ControlPlane) -> APIRouter:
    """The control plane's pages: the overview, task groups and tasks."""
    router = APIRouter(include_in_schema=False)

    @router.get("/ui/")
    def overview(request: Request) -> HTMLResponse:
        groups = [(g, plane.group_status(g.name)) for g in plane.list_groups()]
        tasks = {k.name: v for k, v in plane.store.count_tasks().items() if v}
        health = {"version": despina.__version__, "store": plane.store.engine.dialect.name,
                  "tasks": tasks}  # fmt: skip
        return page(
            "console/overview.html", request, clusters=plane.list_clusters(),
            groups=groups, deployments=plane.list_deployments(), health=health,
            events=plane.store.recent_events(EVENTS_SHOWN),
        )  # fmt: skip

    def tasks_view(request: Request, name: str, state: str | None) -> dict[str, Any]:
        """A group's status and its first tasks (of one state): a page of a group of
        thousands of tasks stays small, its counts say how many there are."""
        tasks = plane.list_tasks(group=name, state=state or None, limit=TASKS_SHOWN)
        return {
            "status": plane.group_status(name), "state": state or "", "shown": TASKS_SHOWN,
            "tasks": tasks, "timeline": timeline(tasks), "group_name": name,
            "may": lambda t: may_operate(request, t.group),
            "may_group": may_operate(request, name),
        }  # fmt: skip

    @router.get("/ui/groups/{name}")
    def group_page(request: Request, name: str, state: StateQuery = None) -> HTMLResponse:
        group = plane.get_group(name)
        return page("console/group.html", request, group=group, **tasks_view(request, name, state))

    @router.get("/ui/groups/{name}/stream")
    async def group_stream(
        request: Request, name: str, state: StateQuery = None
    ) -> StreamingResponse:
        plane.get_group(name)  # 404 before the stream starts
        last = None

        def render() -> str | None:  # sent when it changed
            nonlocal last
            html = fragment("console/tasks.html", **tasks_view(request, name, state))
            html, last = (None if html == last else html), html
            return html

        return sse_stream(request, "tasks", lambda: anyio.to_thread.run_sync(render), POLL_S)

    @router.get("/ui/tasks/{task_id}")
    def task_page(request: Request, task_id: TaskId) -> HTMLResponse:
        task = plane.get_task(task_id)
        return page("console/task.html", request, task=task,
                    may=lambda t: may_operate(request, t.group))  # fmt: skip

    @router.get("/ui/tasks/{task_id}/log")
    async def task_log(request: Request, task_id: TaskId) -> StreamingResponse:
        plane.get_task(task_id)
        offset = 0

        def more() -> str | None:  # what the log gained since the last look, a piece a time
            nonlocal offset
            text, offset = plane.task_logs(task_id, offset, LOG_EVENT_BYTES)
            return fragment("console/log.html", text=text) if text else None

        return sse_stream(request, "log", lambda: anyio.to_thread.run_sync(more), POLL_S)

    @router.post("/ui/tasks/{task_id}/cancel")
    def cancel(request: Request, task_id: TaskId) -> HTMLResponse:
        return _row(request, plane.cancel_task(task_id))

    @router.post("/ui/groups/{name}/retry")
    def retry_all(request: Request, name: str) -> HTMLResponse:
        """Queue every failed or cancelled task of the group again."""
        plane.retry_failed(name)
        return HTMLResponse(fragment("console/tasks.html", **tasks_view(request, name, None)))

    @router.post("/ui/tasks/{task_id}/retry")
    def retry(request: Request, task_id: TaskId) -> HTMLResponse:
        return _row(request, plane.retry_task(task_id))

    return router


def timeline(tasks: list[Task]) -> dict[str, Any]:
    """The tasks that started, as bars on one time axis (percent of the span), grouped by
    the node each ran on: where, when, how long, which attempt."""
    ran = sorted(((t.started_at, t) for t in tasks if t.started_at is not None),
                 key=lambda st: (str(st[1].metrics.get("node", "")), st[0]))  # fmt: skip
    if not ran:
        return {"bars": [], "span_s": 0.0}
    t0 = min(start for start, _ in ran)
    span = max(max((start - t0).total_seconds() + (t.duration_s or 0.0) for start, t in ran),
               1e-3)  # fmt: skip
    bars, node = [], None
    for row, (started, t) in enumerate(ran):
        start, took = (started - t0).total_seconds(), t.duration_s or 0.0
        here = str(t.metrics.get("node", "")) or "this machine"
        bars.append({
            "row": row, "x": 100 * start / span, "w": max(0.3, 100 * took / span),
            "state": t.state.name, "node": here if here != node else "",
            "title": f"task {t.id}, partition {t.partition}, attempt {t.attempt} on {here}: "
                     f"{took:.1f} s, {t.state.name.lower()}",
        })  # fmt: skip
        node = here
    return {"bars": bars, "span_s": span}


def _row(request: Request, task: Task) -> HTMLResponse:
    """A task's row of the tasks table, after a button changed it."""
    may = may_operate(request, task.group)
    return HTMLResponse(fragment("console/task_row.html", t=task, may=lambda _: may))


def _local(target: str) -> str:
    """``target`` if it is a console path of this server, else the overview: a sign-in
    link cannot send the browser to another site."""
    if target.startswith("/ui/") and not target.startswith("//") and "\\" not in target:
        return quote(target, safe="/?=&-_.~%")
    return "/ui/"
