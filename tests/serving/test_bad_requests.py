"""Requests schemathesis once answered with a 500: each now gets a 4xx that says why."""

from __future__ import annotations

from pathlib import Path

import httpx
from typer.testing import CliRunner

from despina.cli.app import app
from despina.control.models import ClusterSpec, GroupSpec
from despina.control.plane import ControlPlane
from tests.control.fixtures import ThreadServer, write_files


def test_odd_values_get_a_4xx_and_the_server_goes_on(
    api_server: ThreadServer, plane: ControlPlane, home: Path, rows_script: Path
) -> None:
    plane.create_cluster(ClusterSpec(name="c"))
    plane.create_group(
        GroupSpec(
            name="g", cluster="c", source=str(write_files(home / "d", 2)), script=str(rows_script)
        )
    )
    (task,) = plane.start_group("g", wait=True)
    with api_server.http() as http:
        nul = {
            "name": "x",
            "cluster": "c",
            "source": str(home / "d") + "\x00/etc",
            "job": "preprocess",
        }
        r = http.post("/v1/groups", json=nul)
        assert r.status_code == 403 and "NUL" in r.json()["detail"], r.text
        r = http.post("/v1/deployments", json={"name": "x", "model": str(home) + "\x00"})
        assert r.status_code == 403 and "NUL" in r.json()["detail"], r.text
        far = http.get(f"/v1/tasks/{task.id}/logs", params={"offset": 2**62})
        assert far.status_code == 200 and far.text == ""
        assert far.headers["X-Log-Offset"] == str(2**62)
        with http.stream("GET", f"/v1/tasks/{task.id}/logs",
                         params={"offset": 2**62, "follow": "true"}) as stream:  # fmt: skip
            assert stream.status_code == 200 and stream.read() == b""
        r = http.post("/v1/tokens", json={"user": "admin", "expires": "99999999999d"})
        assert r.status_code == 422 and "ask for less" in r.json()["detail"], r.text
        endless = {"user": "admin", "password": "x" * 12, "expires": "99999999999d"}
        r = httpx.post(f"{api_server.url}/v1/login", json=endless)  # no token
        assert r.status_code == 422 and "ask for less" in r.json()["detail"], r.text
        assert http.get("/health").status_code == 200


def test_the_cli_refuses_an_endless_token_in_one_line(plane: ControlPlane) -> None:
    plane.create_user("ana", "operator")
    res = CliRunner().invoke(app, ["token", "create", "--user", "ana", "--expires", "999999999d"])
    assert res.exit_code == 2, res.output
    assert res.output.strip().splitlines() == [
        "error: duration '999999999d' is over 10 years; ask for less"
    ]
