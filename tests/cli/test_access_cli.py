"""``despina user|token|events|keys|login`` on the embedded store and through a server."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from despina.cli.app import app
from despina.control.plane import ControlPlane
from tests.cli.test_control_cli import fails, ok, runner
from tests.control.fixtures import ThreadServer


def test_users_tokens_and_the_activity_log_from_the_cli(home: Path) -> None:
    ok("user", "add", "ana", "--role", "operator")
    assert "unknown role" in fails(2, "user", "add", "bob", "--role", "root")
    assert "already exists" in fails(6, "user", "add", "ana", "--role", "viewer")
    res = runner.invoke(
        app, ["token", "create", "--user", "ana", "--expires", "30d", "--scope", "group:g"]
    )
    assert res.exit_code == 0, res.output
    token = res.stdout.strip().splitlines()[-1]
    assert token.startswith("dsp_") and "shown once" in res.stderr
    # No command takes a token as an argument (it would land in shell history).
    for cmd in (["token", "create", "--user", "ana"], ["login", "--server", "http://x"]):
        refused = runner.invoke(app, [*cmd, "--token", token])
        assert refused.exit_code == 2 and "No such option" in refused.output
    [info] = json.loads(ok("token", "ls", "--json"))
    assert info["user"] == "ana" and info["scopes"] == ["group:g"] and info["expires_at"]
    assert token not in ok("token", "ls", "--json")
    ok("token", "revoke", info["id"])
    assert json.loads(ok("token", "ls", "--json"))[0]["revoked_at"]
    assert "no token" in fails(4, "token", "revoke", "tok_nope")
    assert "cannot read duration" in fails(2, "token", "create", "--user", "ana", "--expires", "30")
    [user] = json.loads(ok("user", "ls", "--json"))
    assert user["name"] == "ana" and user["role"] == "operator"
    events = json.loads(ok("events", "ls", "--json"))
    assert [e["action"] for e in reversed(events)] == [
        "user add",
        "token create",
        "token revoke",
    ]
    report = json.loads(ok("events", "verify", "--json"))
    assert report["ok"] and report["entries"] == 3
    head = report["head"]
    assert "reaches the expected head (entry 3)" in ok("events", "verify", "--expect", head)
    with sqlite3.connect(home / "despina.db") as db:  # cut back: a shorter, valid chain
        db.execute("DROP TRIGGER activity_no_delete")
        db.execute("DELETE FROM activity WHERE seq = 3")
    assert "intact: 2 entries" in ok("events", "verify")
    assert "not in the log" in fails(11, "events", "verify", "--expect", head)
    with sqlite3.connect(home / "despina.db") as db:  # an intruder with the database file
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            db.execute("UPDATE activity SET target = 'someone else' WHERE seq = 2")
        db.execute("DROP TRIGGER activity_no_update")
        db.execute("UPDATE activity SET target = 'someone else' WHERE seq = 2")
    assert "broken at entry 2" in fails(11, "events", "verify")
    ok("user", "rm", "ana")
    assert "no user" in fails(4, "user", "rm", "ana")


def test_passwords_are_prompted_and_stored_as_argon2id(home: Path) -> None:
    res = runner.invoke(
        app,
        ["user", "add", "ana", "--role", "viewer", "--password"],
        input="a long passphrase\na long passphrase\n",
    )
    assert res.exit_code == 0, res.output
    with sqlite3.connect(home / "despina.db") as db:
        [(stored,)] = db.execute("SELECT password_hash FROM users WHERE name = 'ana'")
    assert stored.startswith("$argon2id$") and "passphrase" not in stored


def test_the_cli_reads_its_token_from_a_private_file_written_by_login(
    api_server: ThreadServer, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert "needs a token" in fails(10, "cluster", "ls", "--server", api_server.url)
    res = runner.invoke(app, ["login", "--server", api_server.url], input="dsp_wrong\n")
    assert res.exit_code == 10 and "unknown token" in res.output
    res = runner.invoke(app, ["login", "--server", api_server.url], input=api_server.token + "\n")
    assert res.exit_code == 0 and "logged in as admin" in res.output
    token_file = home / "client-token"
    assert oct(token_file.stat().st_mode & 0o777) == "0o600"
    assert json.loads(ok("whoami", "--server", api_server.url))["role"] == "admin"
    assert json.loads(ok("cluster", "ls", "--json", "--server", api_server.url)) == []
    token_file.chmod(0o644)
    assert "chmod 600" in fails(2, "cluster", "ls", "--server", api_server.url)
    token_file.unlink()
    # Or with a password: the server gives a 12-hour token for it.
    res = runner.invoke(
        app, ["user", "add", "ana", "--role", "viewer", "--password"], input="pass phrase 12\n" * 2
    )
    assert res.exit_code == 0, res.output
    res = runner.invoke(
        app, ["login", "--server", api_server.url, "--user", "ana"], input="wrong one\n"
    )
    assert res.exit_code == 10 and "wrong user name or password" in res.output
    res = runner.invoke(
        app, ["login", "--server", api_server.url, "--user", "ana"], input="pass phrase 12\n"
    )
    assert res.exit_code == 0 and "logged in as ana (viewer)" in res.output
    assert json.loads(ok("whoami", "--server", api_server.url))["user"] == "ana"


def test_keys_rotate_rewraps_what_tasks_sealed(plane: ControlPlane, home: Path) -> None:
    from despina.control.models import ClusterSpec, GroupSpec
    from tests.control.fixtures import ROWS_SCRIPT, write_files

    (home / "rows.py").write_text(ROWS_SCRIPT)
    plane.create_cluster(ClusterSpec(name="c", workers=1))
    src = str(write_files(home / "d", 6))
    plane.create_group(
        GroupSpec(name="g", cluster="c", source=src, script=str(home / "rows.py"), partitions=2)
    )
    plane.start_group("g", wait=True)
    before = plane.group_result("g")
    kid = plane.keyring.kid
    out = ok("keys", "rotate")
    assert "now wraps 2 artifact(s)" in out and kid in out
    after = ControlPlane(plane.settings)
    assert after.keyring.kid != kid and not after.keyring.previous
    assert after.group_result("g").equals(before)
    part = Path(plane.list_tasks("g")[0].outputs[0])
    assert "nothing is overwritten" in fails(2, "keys", "decrypt", str(part), "--out", str(part))
    ok("keys", "decrypt", str(part), "--out", str(home / "plain.parquet"))
    import pyarrow.parquet as pq

    assert pq.read_table(home / "plain.parquet").num_rows == 3
    after.close()
