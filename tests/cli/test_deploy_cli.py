"""``despina deploy`` / ``deployments`` and the server that hosts what they register."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from despina.cli.app import app
from despina.control.plane import ControlPlane
from tests.control.fixtures import ThreadServer
from tests.serving.fixtures import png
from tests.waiting import wait_for

runner = CliRunner()


def run(code: int, *args: str) -> tuple[str, str]:
    res = runner.invoke(app, list(args))
    assert res.exit_code == code, res.output
    return res.stdout, res.stderr


def test_deploy_registers_and_the_running_server_picks_it_up(
    home_model: Path, plane: ControlPlane, monkeypatch: pytest.MonkeyPatch
) -> None:
    from despina.data.sources import digits_arrays

    server = ThreadServer(plane)
    try:
        out, _ = run(0, "deploy", str(home_model), "--name", "digits")
        assert "deployment digits (whole) registered" in out
        with server.http() as client:
            wait_for(lambda: client.get("/ready").status_code == 200, 20, 0.2, "/ready")
            images, labels = digits_arrays()
            r = client.post(
                "/v1/deployments/digits/predict", files={"file": ("a.png", png(images[0]))}
            )
            assert r.status_code == 200, r.text
            assert r.json()["objects"][0]["label"] == str(labels[0])
            listed = json.loads(run(0, "deployments", "ls", "--json")[0])
            assert [(d["name"], d["state"]) for d in listed] == [("digits", "running")]
            # It is a task of the control plane, listed and logged like any other.
            [task] = json.loads(run(0, "task", "ls", "--group", "digits", "--json")[0])
            assert task["id"] == listed[0]["task_id"] and task["state"] == "RUNNING"
            assert "serving" in run(0, "task", "logs", str(task["id"]))[0]
            # Through the server too, and removal stops the serving.
            monkeypatch.setenv("DESPINA_TOKEN", server.token)  # as a user sets it
            listed = json.loads(run(0, "deployments", "ls", "--json", "--server", server.url)[0])
            assert listed[0]["version"] and listed[0]["extractor"] == "whole"
            run(0, "deployments", "rm", "digits", "--server", server.url)
            r = client.post(
                "/v1/deployments/digits/predict", files={"file": ("a.png", png(images[0]))}
            )
            assert r.status_code == 404
    finally:
        server.stop()


def test_deploy_refuses_bad_folders_names_and_extractors(
    digits_model: Path, home_model: Path, home: Path
) -> None:
    broken = home / "broken"
    shutil.copytree(digits_model, broken)
    (broken / "index.faiss").unlink()
    _, err = run(5, "deploy", str(broken), "--name", "b")
    assert "missing index.faiss" in err and "despina audit" in err
    _, err = run(4, "deploy", str(home / "nowhere"), "--name", "b")
    assert "does not exist" in err
    _, err = run(3, "deploy", str(digits_model), "--name", "b")  # outside DESPINA_HOME
    assert "model" in err and "outside the allowed roots" in err
    (home / "escape").symlink_to(digits_model)  # a link does not get it in either
    _, err = run(3, "deploy", str(home / "escape"), "--name", "b")
    assert "outside the allowed roots" in err
    _, err = run(2, "deploy", str(home_model), "--name", "b", "--extractor", "cascade:martian")
    assert "no OpenCV cascade named 'martian'" in err
    _, err = run(4, "deploy", str(home_model), "--name", "b", "--extractor", "learned")
    assert "train-detector" in err
    _, err = run(2, "deploy", str(home_model), "--name", "Bad Name")
    assert "names are 1-63 lowercase" in err
    run(0, "deploy", str(home_model), "--name", "once")
    _, err = run(6, "deploy", str(home_model), "--name", "once")
    assert "already exists" in err
    assert json.loads(run(0, "deployments", "ls", "--json")[0])[0]["state"] == "pending"


def test_despina_serve_answers_on_its_port(digits_model: Path, home: Path) -> None:
    import os
    import signal
    import socket
    import subprocess
    import sys
    import tempfile

    from despina.data.sources import digits_arrays

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    despina = Path(sys.executable).parent / "despina"
    token = "dsp_" + "t" * 40
    peer_files = set(Path(tempfile.gettempdir()).glob("despina-serve-peers-*"))
    proc = subprocess.Popen(
        [str(despina), "serve", str(digits_model), "--port", str(port), "--workers", "2"],
        env={**os.environ, "DESPINA_ADMIN_TOKEN": token},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    auth = {"Authorization": f"Bearer {token}"}
    try:
        wait_for(
            lambda: httpx.get(url + "/ready", timeout=1, headers=auth).status_code == 200,
            60,
            0.2,
            "despina serve answering /ready",
            alive=lambda: proc.poll() is None,
        )
        # The deployment is named after the model folder's parent (the folder is "model").
        name = digits_model.parent.name
        images, labels = digits_arrays()
        r = httpx.post(
            f"{url}/v1/deployments/{name}/predict",
            files={"file": ("a.png", png(images[5]))},
            headers=auth,
        )
        assert r.status_code == 200, r.text
        # Without the token: refused.
        r = httpx.post(
            f"{url}/v1/deployments/{name}/predict", files={"file": ("a.png", png(images[5]))}
        )
        assert r.status_code == 401
        r = httpx.post(
            f"{url}/v1/deployments/{name}/predict",
            files={"file": ("a.png", png(images[5]))},
            headers=auth,
        )
        assert r.status_code == 200, r.text
        assert r.json()["objects"][0]["label"] == str(labels[5])
        # Its console: a token signs in, and the home page is the model's own page.
        with httpx.Client(base_url=url, follow_redirects=True) as browser:
            signed = browser.post("/ui/login", data={"token": token, "next": "/ui/"})
            assert signed.status_code == 200 and signed.url.path == f"/ui/deployments/{name}"
            assert f"Deployment {name}" in signed.text and "requests" in signed.text
            assert "/ui/audits" not in signed.text  # no control plane: no audits to link
            assert browser.get("/ui/deployments/nope").status_code == 404
        assert httpx.get(f"{url}/ui/deployments/{name}").status_code == 303  # not signed in
        # The processes' shared busy bytes (despina.serving.peers) exist while they run.
        assert set(Path(tempfile.gettempdir()).glob("despina-serve-peers-*")) > peer_files
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
        proc.stdout.close()  # type: ignore[union-attr]
        proc.stderr.close()  # type: ignore[union-attr]
    assert set(Path(tempfile.gettempdir()).glob("despina-serve-peers-*")) == peer_files


def test_despina_serve_refuses_a_broken_folder_before_starting(
    digits_model: Path, home: Path
) -> None:
    broken = home / "broken"
    shutil.copytree(digits_model, broken)
    (broken / "model.onnx").unlink()
    _, err = run(5, "serve", str(broken))
    assert "missing model.onnx" in err


@pytest.fixture
def serve_in_this_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let `serve` run in this test process and leave it as it was: no hardening, its
    logging left alone (a handler on the runner's captured stderr would outlive it), and
    the environment `serve` sets undone."""
    import despina.security.process
    import despina.serving.access_log

    monkeypatch.setattr(despina.security.process, "harden_process", lambda: None)
    monkeypatch.setattr(despina.serving.access_log, "configure_json_logging", lambda: None)
    for key in ("MODEL", "NAME", "EXTRACTOR"):
        monkeypatch.setenv(f"DESPINA_SERVE_{key}", "")
    for key in ("MAX_BATCH", "INFERENCE_THREADS", "MODEL_WORKERS"):
        monkeypatch.setenv(f"DESPINA_{key}", "1")


def test_both_servers_run_on_the_standard_event_loop(
    digits_model: Path, home: Path, monkeypatch: pytest.MonkeyPatch, serve_in_this_process: None
) -> None:
    """Under uvloop some requests waited over a second at load (see SERVER_LOOP)."""
    import uvicorn

    calls: list[dict[str, object]] = []
    monkeypatch.setattr(uvicorn, "run", lambda *_, **kw: calls.append(kw))
    run(0, "serve", str(digits_model))
    run(0, "server", "start")
    assert [c["loop"] for c in calls] == ["asyncio", "asyncio"]
