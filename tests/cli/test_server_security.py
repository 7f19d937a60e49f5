"""``despina server start`` as a user runs it: TLS with a certificate made here, the
bootstrap admin token, and no token or key in any log it writes."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from typer.testing import CliRunner

from despina.cli.app import app
from tests.control.fixtures import ROWS_SCRIPT, write_files
from tests.waiting import wait_for


def make_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key (mode 0600)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "despina-test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_tls_server_with_tokens_that_never_reach_a_log(home: Path) -> None:
    cert, key = make_certificate(home / "tls")
    port = _port()
    admin = "dsp_" + "a" * 43
    env = {**os.environ, "DESPINA_HOME": str(home), "DESPINA_ADMIN_TOKEN": admin}
    env.pop("DESPINA_MASTER_KEY", None)
    log_path = home / "server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "despina.cli.app", "server", "start", "--port", str(port),
             "--tls-cert", str(cert), "--tls-key", str(key)],
            env=env, stdout=log, stderr=log, start_new_session=True,
        )  # fmt: skip
    url = f"https://127.0.0.1:{port}"
    auth = {"Authorization": f"Bearer {admin}"}
    tokens = [admin]
    try:
        ca = ssl.create_default_context(cafile=str(cert))
        http = httpx.Client(base_url=url, verify=ca, timeout=30, headers=auth)
        wait_for(
            lambda: http.get("/health").status_code == 200,
            60,
            0.2,
            "the TLS server answering /health",
            alive=lambda: proc.poll() is None,
        )
        # TLS only: plain HTTP to the same port gets no answer, an unknown CA is refused.
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=5)
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{url}/health", timeout=5)
        assert http.get("/v1/whoami").json()["role"] == "admin"
        # Tokens go back and forth: created, used, guessed, revoked.
        assert http.post("/v1/users", json={"name": "ana", "role": "operator"}).status_code == 201
        made = http.post("/v1/tokens", json={"user": "ana", "expires": "1d"}).json()
        tokens.append(made["token"])
        ana = {"Authorization": f"Bearer {made['token']}"}
        assert http.post("/v1/clusters", json={"name": "c"}, headers=ana).status_code == 201
        (home / "rows.py").write_text(ROWS_SCRIPT)
        body = {"name": "g", "cluster": "c", "source": str(write_files(home / "d", 4)),
                "script": str(home / "rows.py")}  # fmt: skip
        assert http.post("/v1/groups", json=body, headers=ana).status_code == 201
        assert http.post("/v1/groups/g/start", headers=ana).status_code == 200
        state = lambda: http.get("/v1/groups/g/status").json()["state"]  # noqa: E731
        wait_for(lambda: state() == "SUCCEEDED", 60, 0.3, "group g succeeding")
        guess = "dsp_" + "g" * 43
        tokens.append(guess)
        assert (
            http.get("/v1/clusters", headers={"Authorization": f"Bearer {guess}"}).status_code
            == 401
        )
        assert http.delete(f"/v1/tokens/{made['id']}").status_code == 200
        assert http.get("/v1/clusters", headers=ana).status_code == 401
        assert http.get("/v1/events/verify").json()["ok"]
        http.close()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
    # The master key was created 0600 and sealed the task's output.
    key_file = json.loads((home / "master.key").read_text())
    for private in ("master.key", "despina.db", "despina.db-wal"):
        assert oct((home / private).stat().st_mode & 0o777) == "0o600", private
    secrets = tokens + key_file["keys"]
    logs = [log_path, *(home / "logs").rglob("*")]
    text = "".join(p.read_text(errors="replace") for p in logs if p.is_file())
    assert "request" in text and "task" in text  # there are logs to search
    with __import__("sqlite3").connect(home / "despina.db") as db:
        text += " ".join(str(r) for r in db.execute("SELECT * FROM activity"))
        text += " ".join(str(r) for r in db.execute("SELECT * FROM task_events"))
    leaked = [s[:8] + "..." for s in secrets if s in text]
    assert not leaked, f"secrets in logs: {leaked}"


def test_tls_options_are_checked_before_starting(home: Path) -> None:
    cert, key = make_certificate(home / "tls")
    runner = CliRunner()
    r = runner.invoke(app, ["server", "start", "--tls-cert", str(cert)])
    assert r.exit_code == 2 and "both --tls-cert and --tls-key" in r.output
    key.chmod(0o644)
    r = runner.invoke(app, ["server", "start", "--tls-cert", str(cert), "--tls-key", str(key)])
    assert r.exit_code == 2 and "chmod 600" in r.output
