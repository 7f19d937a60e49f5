"""The REST API over real HTTP on loopback, with its scheduler running the tasks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from despina.control.plane import ControlPlane
from tests.control.fixtures import ThreadServer, wait_for, write_files


@pytest.fixture
def http(api_server: ThreadServer) -> Iterator[httpx.Client]:
    with api_server.http() as client:
        assert client.post("/v1/clusters", json={"name": "c", "workers": 2}).status_code == 201
        yield client


def _group(http: httpx.Client, home: Path, script: Path, **kw: object) -> httpx.Response:
    source = write_files(home / "data", 10)
    body = {"name": "g", "cluster": "c", "source": str(source), "script": str(script), **kw}
    return http.post("/v1/groups", json=body)


def test_health_and_openapi(http: httpx.Client) -> None:
    assert http.get("/health").json()["status"] == "ok"
    paths = http.get("/openapi.json").json()["paths"]
    for path in ("/v1/clusters", "/v1/groups/{name}/start", "/v1/tasks/{task_id}/logs"):
        assert path in paths


def test_a_group_runs_on_the_server_and_is_observable(
    http: httpx.Client, home: Path, rows_script: Path
) -> None:
    assert _group(http, home, rows_script, partitions=2).status_code == 201
    started = http.post("/v1/groups/g/start").json()
    assert [t["state"] for t in started] == ["PENDING", "PENDING"]
    wait_for(lambda: http.get("/v1/groups/g/status").json()["state"] == "SUCCEEDED", 60)
    status = http.get("/v1/groups/g/status").json()
    assert status["counts"]["SUCCEEDED"] == 2 and status["done"] == 10

    page = http.get("/v1/tasks", params={"group": "g", "limit": 1, "offset": 1}).json()
    assert [t["partition"] for t in page["items"]] == [1]
    assert len(http.get("/v1/tasks", params={"state": "succeeded"}).json()["items"]) == 2
    tid = started[0]["id"]
    whole = http.get(f"/v1/tasks/{tid}/logs")
    assert "wrote 5 rows" in whole.text
    end = int(whole.headers["X-Log-Offset"])
    assert end == len(whole.content)  # where to go on from: nothing is left out
    rest = http.get(f"/v1/tasks/{tid}/logs", params={"offset": end})
    assert int(rest.headers["X-Log-Offset"]) == end + len(rest.content)
    followed = http.get(f"/v1/tasks/{tid}/logs", params={"follow": "true"}).text
    assert "succeeded" in followed

    metrics = http.get("/metrics").text
    assert 'despina_tasks{state="SUCCEEDED"} 2.0' in metrics
    assert "despina_task_duration_seconds_count 2.0" in metrics
    assert "despina_items_processed_total 10.0" in metrics
    assert "despina_queue_depth 0.0" in metrics

    # Terminal states never change, except by an explicit retry.
    resp = http.post(f"/v1/tasks/{tid}/cancel")
    assert resp.status_code == 409 and "SUCCEEDED" in resp.json()["detail"]
    resp = http.post(f"/v1/tasks/{tid}/retry")
    assert resp.status_code == 409 and "only a FAILED or CANCELLED" in resp.json()["detail"]
    assert http.post("/v1/groups/g/start").status_code == 409


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("def process(batch, context)\n    return []\n", "SyntaxError"),
        ("def process(batch, context):\n    return 1 / 0\n", "ZeroDivisionError"),
        ("x = 1\n", "defines neither process"),
    ],
)
def test_a_broken_script_fails_its_task_and_the_server_stays_up(
    http: httpx.Client, home: Path, source: str, expected: str
) -> None:
    script = home / "broken.py"
    script.write_text(source)
    assert _group(http, home, script, max_retries=0).status_code == 201
    (task,) = http.post("/v1/groups/g/start").json()

    def state() -> str:
        return str(http.get(f"/v1/tasks/{task['id']}").json()["task"]["state"])

    wait_for(lambda: state() == "FAILED", 60)
    shown = http.get(f"/v1/tasks/{task['id']}").json()["task"]
    assert expected in shown["exit_reason"]
    assert "Traceback" in http.get(f"/v1/tasks/{task['id']}/logs").text
    assert http.get("/health").status_code == 200


def test_bad_requests_get_clear_4xx(
    http: httpx.Client, home: Path, rows_script: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    def detail(resp: httpx.Response, code: int) -> str:
        assert resp.status_code == code, resp.text
        return str(resp.json()["detail"])

    assert "already exists" in detail(http.post("/v1/clusters", json={"name": "c"}), 409)
    assert "workers" in detail(http.post("/v1/clusters", json={"name": "d", "workers": -1}), 422)
    assert "names are" in detail(http.post("/v1/clusters", json={"name": "Bad Name"}), 422)
    assert "no cluster named" in detail(http.get("/v1/clusters/nope"), 404)
    assert "no task with id" in detail(http.get("/v1/tasks/999"), 404)
    assert "no task group" in detail(http.post("/v1/groups/nope/start"), 404)
    assert "no cluster named" in detail(_group(http, home, rows_script, cluster="zz"), 404)
    assert "does not exist" in detail(_group(http, home, home / "missing.py"), 404)
    outside = tmp_path_factory.mktemp("elsewhere")
    body = {"name": "o", "cluster": "c", "source": str(outside), "script": str(rows_script)}
    assert "outside the allowed roots" in detail(http.post("/v1/groups", json=body), 403)
    assert "cpus" in detail(_group(http, home, rows_script, resources={"cpus": -2}), 422)
    assert "ask for less" in detail(_group(http, home, rows_script, resources={"cpus": 64}), 422)
    body = {
        "name": "j",
        "cluster": "c",
        "source": str(home),
        "job": "preprocess",
        "script": str(rows_script),
    }
    assert "exactly one" in detail(http.post("/v1/groups", json=body), 422)
    body = {
        "name": "j",
        "cluster": "c",
        "source": str(home),
        "job": "preprocess",
        "config": {"size": "huge"},
    }
    assert "size" in detail(http.post("/v1/groups", json=body), 422)
    assert _group(http, home, rows_script).status_code == 201
    assert "already exists" in detail(_group(http, home, rows_script), 409)
    assert "task group" in detail(http.delete("/v1/clusters/c"), 409)


def test_a_started_server_exempts_its_startup_heap_from_full_collections(
    plane: ControlPlane,
) -> None:
    """Full garbage collections under load walked the whole startup heap (75-107 ms
    pauses); once the server has started, what startup left is frozen."""
    import gc

    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    server = ThreadServer(plane)  # returns once the app's startup has run
    try:
        assert gc.get_freeze_count() > 10_000  # modules, classes, the app
        with server.http() as http:
            assert http.get("/health").status_code == 200
    finally:
        server.stop()
        gc.unfreeze()
