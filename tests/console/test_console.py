"""The web console in a real browser (Chromium driven by Playwright) against the real
server on loopback: signing in, live progress and logs without a reload, the buttons each
role may press (and a 403 for a forged press), text that stays text, and an expired
session sent back to the sign-in page."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from despina.control.models import ClusterSpec, GroupSpec
from despina.control.plane import ControlPlane
from despina.security.passwords import hash_password
from despina.security.roles import Role
from tests.console.browser import browser_or_fail
from tests.control.fixtures import ThreadServer, write_files

SLOW_SCRIPT = '''
import time


def process(batch, context):
    """One row per file, a log line and DELAY seconds each."""
    rows = []
    for i, path in enumerate(batch):
        time.sleep(float(context.env.get("DELAY", "0.2")))
        print(f"line {i} of partition {context.partition}", flush=True)
        rows.append({"name": path})
        context.progress(i + 1)
    return rows
'''
PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with browser_or_fail() as b:
        yield b


@pytest.fixture
def console(plane: ControlPlane, home: Path) -> Iterator[ThreadServer]:
    """The server, with a cluster and an operator and a viewer who have passwords."""
    server = ThreadServer(plane)
    for name, role in (("olga", Role.OPERATOR), ("victor", Role.VIEWER)):
        plane.store.create_user(name, role, password_hash=hash_password(PASSWORD))
    plane.create_cluster(ClusterSpec(name="c", workers=2))
    (home / "slow.py").write_text(SLOW_SCRIPT)
    yield server
    server.stop()


def _group(plane: ControlPlane, home: Path, name: str, files: int, delay: float,
           source: Path | None = None) -> None:  # fmt: skip
    source = source or write_files(home / f"{name}-data", files)
    plane.create_group(GroupSpec(name=name, cluster="c", source=str(source),
                                 script=str(home / "slow.py"), env={"DELAY": str(delay)},
                                 max_retries=0))  # fmt: skip


def _sign_in(page: Any, url: str, user: str, password: str = PASSWORD) -> None:
    page.goto(f"{url}/ui/login")
    form = page.get_by_role("form", name="Sign in with a password")
    form.get_by_label("User").fill(user)
    form.get_by_label("Password").fill(password)
    form.get_by_role("button", name="Sign in").click()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.set_default_timeout(20_000)
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.dialogs = dialogs
    yield page
    context.close()


def test_a_password_signs_in_and_a_wrong_one_is_refused_on_the_page(
    console: ThreadServer, page: Any
) -> None:
    _sign_in(page, console.url, "olga", "not it")
    assert page.get_by_role("alert").inner_text().startswith("wrong user name or password")
    assert "/ui/login" in page.url
    _sign_in(page, console.url, "olga")
    page.wait_for_url(f"{console.url}/ui/")
    assert page.get_by_role("heading", name="Overview").is_visible()
    assert "olga (operator)" in page.locator("header").inner_text()
    cookie = next(c for c in page.context.cookies() if c["name"] == "despina_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/ui/login")
    page.goto(f"{console.url}/ui/")  # signed out: back to the sign-in page
    assert "/ui/login" in page.url


def test_a_token_signs_in_and_a_page_asked_for_first_is_where_it_lands(
    console: ThreadServer, page: Any, plane: ControlPlane, home: Path
) -> None:
    _group(plane, home, "tok", 2, 0.0)
    page.goto(f"{console.url}/ui/groups/tok")
    assert "/ui/login" in page.url  # not signed in yet
    page.get_by_role("form", name="Sign in with a token").get_by_label("Token").fill(console.token)
    page.get_by_role("button", name="Sign in with a token").click()
    page.wait_for_url(f"{console.url}/ui/groups/tok")
    assert page.get_by_role("heading", name="Task group tok").is_visible()


def test_a_running_group_advances_and_finishes_on_the_page_without_a_reload(
    console: ThreadServer, page: Any, plane: ControlPlane, home: Path, tmp_path: Path
) -> None:
    _group(plane, home, "live", 12, 0.25)
    _sign_in(page, console.url, "victor")
    page.wait_for_url(f"{console.url}/ui/")
    plane.start_group("live")
    page.goto(f"{console.url}/ui/groups/live")
    page.evaluate("window.stillThisPage = true")
    seen = set()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        done = page.locator("[data-done]")
        if done.count():
            seen.add(int(done.get_attribute("data-done")))
        if page.locator('[data-state="SUCCEEDED"]').count():
            break
        time.sleep(0.1)
    assert page.locator('[data-state="SUCCEEDED"]').count() == 1
    assert page.evaluate("window.stillThisPage") is True  # no reload happened
    assert len({d for d in seen if 0 < d < 12}) >= 2, seen  # progress moved in between
    assert page.locator("tr[id^=task-] .SUCCEEDED").count() == 1
    # Screenshots of the main pages, in the test's folder (docs/console.md shows them).
    shots = tmp_path / "screenshots"
    page.screenshot(path=str(shots / "console-group.png"), full_page=True)
    page.goto(f"{console.url}/ui/")
    page.get_by_role("link", name="live").wait_for()
    page.screenshot(path=str(shots / "console-overview.png"), full_page=True)
    page.get_by_role("link", name="live").click()
    page.locator("tr[id^=task-] a").first.click()
    page.locator("#log").filter(has_text="line 11").wait_for()
    page.screenshot(path=str(shots / "console-task.png"), full_page=True)
    assert all((shots / f"console-{p}.png").stat().st_size > 5_000
               for p in ("group", "overview", "task"))  # fmt: skip


def test_a_task_log_follows_live(
    console: ThreadServer, page: Any, plane: ControlPlane, home: Path
) -> None:
    _group(plane, home, "logs", 8, 0.3)
    (task,) = plane.start_group("logs")
    _sign_in(page, console.url, "victor")
    page.wait_for_url(f"{console.url}/ui/")
    page.goto(f"{console.url}/ui/tasks/{task.id}")
    log = page.locator("#log")
    log.filter(has_text="line 1 of partition 0").wait_for()
    assert "line 7" not in log.inner_text()  # the task is still writing
    log.filter(has_text="line 7 of partition 0").wait_for()


def test_an_operator_cancels_a_task_a_viewer_sees_no_button_and_a_forged_press_is_403(
    console: ThreadServer, browser: Any, page: Any, plane: ControlPlane, home: Path
) -> None:
    _group(plane, home, "stop", 200, 0.2)
    (task,) = plane.start_group("stop")
    _sign_in(page, console.url, "victor")
    page.wait_for_url(f"{console.url}/ui/")
    page.goto(f"{console.url}/ui/groups/stop")
    page.locator(f"#task-{task.id} .RUNNING").wait_for()
    assert page.get_by_role("button", name="Cancel").count() == 0  # a viewer's page
    status = page.evaluate(
        """async (id) => {
            const csrf = JSON.parse(document.body.getAttribute("hx-headers"))["X-CSRF-Token"];
            const r = await fetch(`/ui/tasks/${id}/cancel`,
                                  {method: "POST", headers: {"X-CSRF-Token": csrf}});
            return r.status;
        }""",
        task.id,
    )
    assert status == 403
    assert plane.get_task(task.id).state.name == "RUNNING"

    other = browser.new_context()
    op = other.new_page()
    _sign_in(op, console.url, "olga")
    op.wait_for_url(f"{console.url}/ui/")
    op.goto(f"{console.url}/ui/groups/stop")
    op.get_by_role("button", name="Cancel").click()
    op.locator(f"#task-{task.id} .CANCELLED").wait_for()
    assert plane.get_task(task.id).state.name == "CANCELLED"
    # Without the page's CSRF token the same press is refused, even by an operator.
    token = next(c for c in other.cookies() if c["name"] == "despina_session")["value"]
    forged = httpx.post(f"{console.url}/ui/tasks/{task.id}/retry",
                        cookies={"despina_session": token})  # fmt: skip
    assert forged.status_code == 403 and "CSRF" in forged.json()["detail"]
    other.close()


def test_a_name_with_markup_is_shown_as_text(
    console: ThreadServer, page: Any, plane: ControlPlane, home: Path
) -> None:
    evil = home / "<img src=x onerror=alert(1)><script>alert(2)<\\script>"
    _group(plane, home, "markup", 1, 0.0, source=write_files(evil, 1))
    _sign_in(page, console.url, "victor")
    page.wait_for_url(f"{console.url}/ui/")
    page.goto(f"{console.url}/ui/groups/markup")
    assert str(evil) in page.locator("main").inner_text()
    assert page.locator("main img").count() == 0 and page.dialogs == []


def test_an_expired_session_goes_back_to_sign_in(
    console: ThreadServer, page: Any, plane: ControlPlane
) -> None:
    token, _ = plane.store.issue_token("victor", expires_in=timedelta(seconds=2))
    page.goto(f"{console.url}/ui/login")
    page.get_by_role("form", name="Sign in with a token").get_by_label("Token").fill(token)
    page.get_by_role("button", name="Sign in with a token").click()
    page.wait_for_url(f"{console.url}/ui/")
    time.sleep(2.5)
    page.goto(f"{console.url}/ui/")
    assert "/ui/login" in page.url
    assert "expired" in page.get_by_role("alert").inner_text()
