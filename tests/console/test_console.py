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


def _open(page: Any, url: str, user: str, path: str) -> None:
    """Sign ``user`` in, then open ``path``."""
    _sign_in(page, url, user)
    page.wait_for_url(f"{url}/ui/")
    page.goto(f"{url}{path}")


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.set_default_timeout(20_000)
    dialogs: list[str] = []
    page.accept_dialogs = False
    page.on("dialog", lambda d: (dialogs.append(d.message),
                                 d.accept() if page.accept_dialogs else d.dismiss()))  # fmt: skip
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
    bar = page.locator("#timeline rect.run")
    assert bar.count() == 1 and "attempt 1 on" in bar.locator("title").text_content()
    # The one task spans the axis: drawn at the width the page computed (no style of the
    # page's progress bars overriding it).
    assert bar.bounding_box()["width"] > 0.7 * page.locator("#timeline").bounding_box()["width"]
    # Screenshots of the main pages, in the test's folder (docs/console.md shows them).
    shots = tmp_path / "screenshots"
    page.screenshot(path=str(shots / "console-group.png"), full_page=True)
    page.goto(f"{console.url}/ui/")
    live = page.get_by_role("table", name="Task groups").get_by_role("link", name="live")
    live.wait_for()
    assert "1 succeeded" in page.locator("#health").inner_text()
    events = page.get_by_role("table", name="Recent events").inner_text()
    assert "live" in events and "SUCCEEDED" in events and "RUNNING" in events
    page.screenshot(path=str(shots / "console-overview.png"), full_page=True)
    live.click()
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
    _open(page, console.url, "victor", f"/ui/tasks/{task.id}")
    log = page.locator("#log")
    log.filter(has_text="line 1 of partition 0").wait_for()
    assert "line 7" not in log.inner_text()  # the task is still writing
    log.filter(has_text="line 7 of partition 0").wait_for()


def test_an_operator_cancels_a_task_a_viewer_sees_no_button_and_a_forged_press_is_403(
    console: ThreadServer, browser: Any, page: Any, plane: ControlPlane, home: Path
) -> None:
    _group(plane, home, "stop", 200, 0.2)
    (task,) = plane.start_group("stop")
    _open(page, console.url, "victor", "/ui/groups/stop")
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
    _open(op, console.url, "olga", "/ui/groups/stop")
    op.get_by_role("button", name="Cancel").click()
    op.locator(f"#task-{task.id} .CANCELLED").wait_for()
    assert plane.get_task(task.id).state.name == "CANCELLED"
    assert page.get_by_role("button", name="Retry all failed and cancelled").count() == 0
    op.get_by_role("button", name="Retry all failed and cancelled").click()
    op.locator(f"#task-{task.id} .CANCELLED").wait_for(state="detached")
    assert plane.get_task(task.id).state.name in ("PENDING", "RUNNING")
    plane.cancel_task(task.id)
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
    _open(page, console.url, "victor", "/ui/groups/markup")
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


def test_the_sample_browser_filters_by_finding_and_class_and_pages_through_all(
    console: ThreadServer, page: Any, plane: ControlPlane, home: Path
) -> None:
    import io

    import pandas as pd

    from tests.conftest import write_digits
    from tests.control.test_staged_audit import CONFIG

    write_digits(home / "digits", per_class=10)
    (home / "digits" / "3" / "broken.png").write_bytes(b"not a png")
    original = sorted((home / "digits" / "4").glob("*.png"))[0]
    (home / "digits" / "4" / "copy.png").write_bytes(original.read_bytes())
    plane.create_group(GroupSpec(name="a", cluster="c", source=str(home / "digits"),
                                 job="audit", config=CONFIG, timeout_s=300))  # fmt: skip
    (task,) = plane.start_group("a", wait=True)
    samples = pd.read_csv(io.BytesIO(plane.read_output(Path(task.outputs[0]) / "samples.csv")))
    labels = samples[samples["is_label_issue"]]
    _sign_in(page, console.url, "olga")
    page.wait_for_url(f"{console.url}/ui/")
    page.get_by_role("link", name="Audits").click()
    page.get_by_role("link", name="a", exact=True).click()
    page.wait_for_url(f"{console.url}/ui/audits/a")

    confusions = page.locator("#confusions").inner_text()  # given → suggested, the chart
    assert any(f"{a} → {int(b)}" in confusions for a, b in
               zip(labels["given_label"], labels["suggested_label"], strict=True))  # fmt: skip
    page.get_by_label("Finding").select_option("label")
    page.wait_for_url("**kind=label**")
    count = page.locator("#count")
    assert count.get_attribute("data-total") == str(len(labels)) and len(labels) > 0
    assert set(page.locator("tr.sample").evaluate_all("rs => rs.map(r => r.dataset.kind)")) == {
        "label"
    }
    one = str(labels["given_label"].value_counts().index[0])
    page.get_by_label("Given label").select_option(one)
    page.wait_for_url(f"**label={one}**")
    rows = page.locator("tr.sample")
    assert rows.count() == int((labels["given_label"].astype(str) == one).sum())
    assert set(rows.evaluate_all("rs => rs.map(r => r.dataset.label)")) == {one}
    scores = [float(s) for s in rows.evaluate_all("rs => rs.map(r => r.dataset.score)")]
    assert scores == sorted(scores)  # worst first

    # Every finding, ten a page: the pages together hold each of them once.
    page.goto(f"{console.url}/ui/audits/a?kind=all&per=10")
    total = int(page.locator("#count").get_attribute("data-total"))
    seen: list[str] = []
    while True:
        seen += page.locator("tr.sample").evaluate_all(
            "rs => rs.map(r => r.dataset.kind + ' ' + r.children[1].textContent)"
        )
        following = page.get_by_role("link", name="Next")
        if not following.count():
            break
        before = page.locator("#count").get_attribute("data-page")
        following.click()
        page.wait_for_function(f"document.querySelector('#count').dataset.page !== '{before}'")
    assert len(seen) == total == len(set(seen)) > 10
    first = page.locator("tr.sample img").first
    first.scroll_into_view_if_needed()
    page.wait_for_function(
        "img => img.complete && img.naturalWidth > 0", arg=first.element_handle()
    )

    # A sample's page: the image large, its findings, its duplicate set side by side.
    page.goto(f"{console.url}/ui/audits/a?kind=duplicate")
    page.get_by_role("link", name="4/copy.png").first.click()
    page.wait_for_url(lambda u: "/ui/audits/a/sample?id=4" in u and u.endswith("copy.png"))
    assert "duplicate" in page.get_by_role("table", name="Findings").inner_text()
    twins = page.locator("#twins figure").evaluate_all("fs => fs.map(f => f.dataset.id)")
    assert twins == [f"4/{original.name}"]
    page.wait_for_function("() => document.querySelector('#large').naturalWidth > 0")
    # Its nearest neighbours: those map.csv lists, itself not among them.
    where = pd.read_csv(io.BytesIO(plane.read_output(Path(task.outputs[0]) / "map.csv")),
                        dtype={"id": str, "neighbours": str}).set_index("id")  # fmt: skip
    copy = page.url.split("id=")[1].replace("%2F", "/")
    listed = [samples["id"][int(i)] for i in where.loc[copy, "neighbours"].split()]
    near = page.locator("#neighbours figure").evaluate_all("fs => fs.map(f => f.dataset.id)")
    assert near == listed and len(near) == 8 and copy not in near
    page.screenshot(path=str(home / "screenshots" / "console-sample.png"), full_page=True)

    # The embedding map: a box dragged over it shows every sample inside, flagged or not,
    # and one press reviews them all.
    page.goto(f"{console.url}/ui/audits/a")
    page.wait_for_function("() => document.querySelector('#map').dataset.points")
    mapped = where["x"].notna()
    assert int(page.locator("#map").get_attribute("data-points")) == mapped.sum() > 90
    frame = page.locator("#map").bounding_box()
    page.mouse.move(frame["x"] + 4, frame["y"] + 4)
    page.mouse.down()
    page.mouse.move(frame["x"] + frame["width"] / 2, frame["y"] + frame["height"] / 2, steps=4)
    page.mouse.up()
    page.wait_for_url("**x0=**")
    page.wait_for_function("() => document.querySelector('#count').textContent.includes('box')")
    box = {k: float(v) for k, v in (p.split("=") for p in page.url.split("?")[1].split("&"))
           if k in ("x0", "x1", "y0", "y1")}  # fmt: skip
    inside = where[where["x"].between(box["x0"], box["x1"])
                   & where["y"].between(box["y0"], box["y1"])]  # fmt: skip
    assert int(page.locator("#count").get_attribute("data-total")) == len(inside) > 0
    page.accept_dialogs = True
    form = page.get_by_role("form", name="Review every sample shown")
    form.get_by_label("Action for all").select_option("keep")
    form.get_by_role("button", name="Apply").click()
    page.locator("#done").wait_for()
    reviewed = {r.sample for r in plane.list_reviews("a") if r.action == "keep"}
    assert reviewed == set(inside.index) and "reviewed: keep" in page.locator("#done").inner_text()
    page.screenshot(path=str(home / "screenshots" / "console-map.png"), full_page=True)

    with httpx.Client(base_url=console.url, headers=console.headers) as http:
        assert http.get("/ui/audits/a/sample", params={"id": "nope"}).status_code == 404
        escape = http.get("/ui/audits/a/image", params={"id": "../../../etc/passwd"})
        assert escape.status_code == 404 and "no sample" in escape.json()["detail"]
        assert http.get("/ui/audits/a", params={"kind": "bogus"}).status_code == 422
        last = http.get("/ui/audits/a", params={"page": 10**6, "per": 10})
        assert last.status_code == 200 and 'data-page="' in last.text
        assert http.get("/ui/audits/nope").status_code == 404


def test_relabel_three_keep_one_export_and_a_second_audit_applies_them(
    console: ThreadServer,
    page: Any,
    plane: ControlPlane,
    home: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Reviews made on the page are stored (who, when), undoable, refused for samples or
    classes that do not exist, exported by the CLI, and applied by the next audit."""
    import io

    import pandas as pd
    from typer.testing import CliRunner

    from despina.cli.app import app
    from tests.conftest import write_digits
    from tests.control.test_staged_audit import CONFIG

    write_digits(home / "digits", per_class=10)
    plane.create_group(GroupSpec(name="r", cluster="c", source=str(home / "digits"),
                                 job="audit", config=CONFIG, timeout_s=300))  # fmt: skip
    (task,) = plane.start_group("r", wait=True)
    _open(page, console.url, "olga", "/ui/audits/r?kind=all&per=10")
    shown = page.locator("tr.sample").evaluate_all("rs => rs.map(r => r.children[1].textContent)")
    ids = list(dict.fromkeys(shown))[:4]  # a sample with two findings has two rows
    assert len(ids) == 4, shown
    for i in range(3):
        row = page.locator("tr.sample", has=page.locator("td", has_text=ids[i])).first
        row.get_by_label(f"New label for {ids[i]}").select_option("7")
        row.get_by_role("button", name="Relabel").click()
        row.locator('[data-review="relabel"]').wait_for()
    # The fourth by keyboard: j to its row, e to keep it, u to undo, e again. The undone
    # review stays in the history, not in the verdicts.
    keep = page.locator("tr.sample", has=page.locator("td", has_text=ids[3])).first
    for _ in range(shown.index(ids[3]) + 1):
        page.keyboard.press("j")
    assert keep.evaluate("r => r.classList.contains('current')")
    page.keyboard.press("e")
    keep.locator('[data-review="keep"]').wait_for()
    assert "keep by olga" in keep.locator("td.review").inner_text()
    page.keyboard.press("u")
    keep.get_by_role("button", name="Keep").wait_for()
    page.keyboard.press("e")
    keep.locator('[data-review="keep"]').wait_for()
    page.screenshot(path=str(home / "screenshots" / "console-review.png"), full_page=True)
    history = plane.store.list_reviews("r", history=True)
    assert len(history) == 5 and sum(r.undone_at is not None for r in history) == 1
    standing = {r.sample: r for r in plane.list_reviews("r")}
    assert {standing[i].action for i in ids[:3]} == {"relabel"} and standing[
        ids[3]
    ].action == "keep"
    assert all(r.user == "olga" for r in standing.values())
    assert any("/ui/audits/r/reviews" in e.action or "/ui/audits/r/reviews" in e.target
               for e in plane.store.list_activity())  # fmt: skip

    # Bad reviews: a sample that is not there, a class that is not there.
    csrf = page.evaluate("JSON.parse(document.body.getAttribute('hx-headers'))['X-CSRF-Token']")
    session = next(c for c in page.context.cookies() if c["name"] == "despina_session")["value"]
    with httpx.Client(base_url=console.url, cookies={"despina_session": session},
                      headers={"X-CSRF-Token": csrf}) as http:  # fmt: skip
        gone = http.post("/ui/audits/r/reviews", data={"sample": "nope.png", "action": "keep"})
        assert gone.status_code == 404 and "no sample" in gone.json()["detail"]
        odd = http.post("/ui/audits/r/reviews",
                        data={"sample": ids[0], "action": "relabel", "label": "42"})  # fmt: skip
        assert odd.status_code == 422 and "the classes are" in odd.json()["detail"]
        # Two people at once: the last review wins, and its page says whose it replaced.
        other = next(i for i in shown if i not in ids)
        assert http.post("/ui/audits/r/reviews", data={"sample": other, "action": "drop",
                                                       "seen": 0}).status_code == 200  # fmt: skip
        late = http.post("/ui/audits/r/reviews", data={"sample": other, "action": "keep",
                                                       "seen": 0})  # fmt: skip
        assert (
            late.status_code == 200
            and "replaces olga" in late.text
            and "s drop, made while" in late.text
        )
        for _ in range(2):
            http.post("/ui/audits/r/reviews/undo", data={"sample": other})

    monkeypatch.setenv("DESPINA_TOKEN", console.token)
    manifest = home / "corrections.csv"
    done = CliRunner().invoke(app, ["review", "export", "r", "--out", str(manifest),
                                    "--server", console.url])  # fmt: skip
    assert done.exit_code == 0, done.output
    exported = pd.read_csv(manifest, dtype=str)
    assert sorted(exported["id"]) == sorted(ids) and set(exported["user"]) == {"olga"}

    from despina.jobs.audit import audit

    report = audit(home / "digits", home / "again", CONFIG_AUDIT(), corrections=manifest)
    again = report.samples.set_index("id")
    assert (again.loc[ids[:3], "given_label"].astype(str) == "7").all()
    assert not again.loc[ids[3], "is_label_issue"] and not again.loc[ids[3], "is_outlier"]
    assert report.summary["corrections"] == {"drop": 0, "keep": 1, "outlier": 0, "relabel": 3}
    cleaned = pd.read_csv(home / "again" / "cleaned.csv", dtype=str).set_index("id")
    assert ids[3] in cleaned.index
    first = pd.read_csv(io.BytesIO(plane.read_output(Path(task.outputs[0]) / "samples.csv")))
    assert len(first) == len(again)


def CONFIG_AUDIT() -> Any:  # noqa: N802
    from despina.core.config import AuditConfig
    from tests.control.test_staged_audit import CONFIG

    return AuditConfig(**CONFIG)


def test_a_deployment_page_moves_as_requests_arrive(
    console: ThreadServer, page: Any, plane: ControlPlane, home_model: Path, home: Path
) -> None:
    from despina.control.models import DeploymentSpec
    from despina.data.sources import digits_arrays
    from tests.control.fixtures import wait_for
    from tests.serving.fixtures import png

    plane.create_deployment(DeploymentSpec(name="digits", model=str(home_model)))
    with console.http() as http:
        wait_for(lambda: http.get("/ready").status_code == 200, 60, 0.2, "the deployment")
        _sign_in(page, console.url, "victor")
        page.wait_for_url(f"{console.url}/ui/")
        deployments = page.get_by_role("table", name="Deployments")
        deployments.get_by_role("link", name="digits").click()
        page.wait_for_url(f"{console.url}/ui/deployments/digits")
        requests = page.locator("[data-requests]")
        assert requests.get_attribute("data-requests") == "0"
        before = page.locator("#rate polyline").get_attribute("points")
        images = digits_arrays()[0]
        for i in range(12):
            files = {"file": (f"{i}.png", png(images[i]))}
            assert http.post("/v1/deployments/digits/predict", files=files).status_code == 200
        page.wait_for_function(
            "() => document.querySelector('[data-requests]').dataset.requests === '12'"
        )
    assert page.locator("#rate polyline").get_attribute("points") != before  # the chart moved
    assert page.locator("#latency polyline").get_attribute("points")  # p95 drawn over time
    page.screenshot(path=str(home / "screenshots" / "console-deployment.png"), full_page=True)
    text = page.get_by_role("table", name="Deployment statistics").inner_text()
    assert "12 × 200" in text and " ms" in text


def test_a_study_page_shows_trials_best_so_far_and_importances_and_follows_new_ones(
    console: ThreadServer, page: Any, plane: ControlPlane, home: Path
) -> None:
    """An optimize group's page reads its study's own storage as its workers write it:
    trials asked and told through Optuna here, as a worker does."""
    from despina.jobs.optimize import open_study
    from despina.jobs.search_space import Space
    from despina.jobs.study import close_storage, study_storage

    plane.create_group(GroupSpec(name="s", cluster="c", source=str(home), job="optimize",
                                 config={"trials": 8}))  # fmt: skip
    group = plane.get_group("s")
    Path(group.output).mkdir(parents=True, exist_ok=True)
    space = Space.parse(None)
    storage = study_storage(Path(group.output) / "study.journal", plane.settings.database_url)
    study = open_study(storage, "s", space, seed=0)
    fixed = space.distributions()
    for i, accuracy in enumerate((0.80, 0.86, 0.84, 0.88)):
        trial = study.ask(fixed)
        trial.set_user_attr("audit_minutes", 0.5 + i / 10)
        trial.set_user_attr("default", i == 0)
        trial.set_user_attr("worker", f"p{i % 2}")
        study.tell(trial, accuracy)
    running = study.ask(fixed)

    _open(page, console.url, "victor", "/ui/")
    page.get_by_role("link", name="its search").click()
    page.wait_for_url(f"{console.url}/ui/studies/s")
    counts = page.locator("#study-counts")
    assert counts.get_attribute("data-total") == "5"
    assert "1 running, 4 completed" in counts.inner_text() and "0.8800" in counts.inner_text()
    assert "(the default model: 0.8000)" in counts.inner_text()
    assert page.locator("#curve polyline").count() == 1
    assert page.get_by_role("table", name="Parameter importances").locator("tr").count() >= 3
    assert page.locator("tr.trial").count() == 5
    # A worker finishes its trial: the page shows it within its next poll, no reload.
    running.set_user_attr("audit_minutes", 0.6)
    study.tell(running, 0.91)
    close_storage(storage)
    page.wait_for_function(
        "() => document.querySelector('#study-counts').dataset.complete === '5'", timeout=10_000
    )
    assert "0.9100" in page.locator("#study-counts").inner_text()
    page.screenshot(path=str(home / "screenshots" / "console-study.png"), full_page=True)
    with httpx.Client(base_url=console.url, headers=console.headers) as http:
        assert http.get("/ui/studies/nope").status_code == 404
        _group(plane, home, "plain", 1, 0.0)
        wrong = http.get("/ui/studies/plain")
        assert wrong.status_code == 404 and "not a search" in wrong.json()["detail"]
