"""``despina user|token|events|login``: who may use the server, and what they did.

On the embedded store (no ``--server``) these act as an admin: whoever can open the
store's files already holds everything in it. Through ``--server`` they need an admin
token. Tokens are printed once and never accepted as arguments (shell history).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from despina.cli.common import (
    AsJson,
    Server,
    client_for,
    closing_at_exit,
    console,
    err,
    handled,
    print_json,
    print_listing,
)
from despina.core.errors import ConfigError, IntegrityError

user_app = typer.Typer(
    help="Users and their roles (admin, operator, viewer, predictor).", no_args_is_help=True
)
token_app = typer.Typer(help="API tokens: create (shown once), list, revoke.", no_args_is_help=True)
events_app = typer.Typer(
    help="The activity log: list it, verify its hash chain.", no_args_is_help=True
)


@user_app.command("add")
@handled
def user_add(
    name: str,
    role: Annotated[str, typer.Option(help="admin, operator, viewer or predictor")],
    password: Annotated[
        bool, typer.Option("--password", help="prompt for a password (stored as Argon2id)")
    ] = False,
    server: Server = None,
) -> None:
    """Add a user; give them a token with 'despina token create --user NAME'."""
    secret = None
    if password:
        secret = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    user = client_for(server).create_user(name, role, secret)
    console.print(f"user {user.name} added with role {user.role}")


@user_app.command("ls")
@handled
def user_ls(as_json: AsJson = False, server: Server = None) -> None:
    users = client_for(server).list_users()
    print_listing(
        users,
        as_json,
        ("name", "role", "password", "created"),
        lambda u: (u.name, u.role, "yes" if u.has_password else "", f"{u.created_at:%Y-%m-%d}"),
    )


@user_app.command("rm")
@handled
def user_rm(name: str, server: Server = None) -> None:
    """Remove a user and every token they hold."""
    client_for(server).delete_user(name)
    console.print(f"user {name} removed")


@token_app.command("create")
@handled
def token_create(
    user: Annotated[str, typer.Option("--user", help="whose token")],
    expires: Annotated[str | None, typer.Option(help="lifetime: 30d, 12h, 2w")] = None,
    scope: Annotated[
        list[str] | None,
        typer.Option("--scope", help="group:NAME or deployment:NAME (repeatable)"),
    ] = None,
    server: Server = None,
) -> None:
    """Create a token; it is printed once, on stdout alone, so it can be piped."""
    token, info = client_for(server).create_token(user, expires, tuple(scope or ()))
    err.print(
        f"token {info.id} for {info.user} ({info.role}"
        + (f", scopes {', '.join(info.scopes)}" if info.scopes else "")
        + (f", expires {info.expires_at:%Y-%m-%d %H:%M}Z" if info.expires_at else "")
        + "); shown once, Despina keeps only its hash:"
    )
    typer.echo(token)


@token_app.command("ls")
@handled
def token_ls(
    user: Annotated[str | None, typer.Option("--user")] = None,
    as_json: AsJson = False,
    server: Server = None,
) -> None:
    tokens = client_for(server).list_tokens(user)
    print_listing(
        tokens,
        as_json,
        ("id", "user", "role", "scopes", "expires", "revoked"),
        lambda t: (
            t.id,
            t.user,
            t.role,
            ", ".join(t.scopes),
            f"{t.expires_at:%Y-%m-%d %H:%M}" if t.expires_at else "",
            f"{t.revoked_at:%Y-%m-%d %H:%M}" if t.revoked_at else "",
        ),
    )


@token_app.command("revoke")
@handled
def token_revoke(token_id: str, server: Server = None) -> None:
    """Revoke a token by its id (tok_...); it stops working at once."""
    info = client_for(server).revoke_token(token_id)
    console.print(f"token {info.id} of {info.user} revoked")


@events_app.command("ls")
@handled
def events_ls(
    limit: Annotated[int, typer.Option(help="newest N entries")] = 50,
    as_json: AsJson = False,
    server: Server = None,
) -> None:
    entries = client_for(server).list_events(limit)
    print_listing(
        entries,
        as_json,
        ("seq", "at", "actor", "action", "target", "outcome"),
        lambda e: (str(e.seq), e.at[:19], e.actor, e.action, e.target, e.outcome),
    )


@events_app.command("verify")
@handled
def events_verify(
    expect: Annotated[
        str | None,
        typer.Option(
            help="a head printed by an earlier verify: fail if the log no longer reaches it "
            "(its newest entries were deleted)"
        ),
    ] = None,
    as_json: AsJson = False,
    server: Server = None,
) -> None:
    """Recompute the keyed hash chain; exit non-zero if an entry was edited, forged or
    deleted. Keep the head it prints somewhere else, and pass it to --expect later."""
    report = client_for(server).verify_events(expect)
    if as_json:
        print_json(report)
    if not report["ok"]:
        where = f" at entry {report['broken_at']}" if report["broken_at"] else ""
        raise IntegrityError(f"the activity log is broken{where}: {report['reason']}")
    if not as_json:
        reached = f"; it reaches the expected head (entry {report['expected_at']})"
        typer.echo(
            f"activity log intact: {report['entries']} entries" + (reached if expect else "")
        )
        typer.echo(f"head {report['head']}")  # one line, unwrapped: to keep and pass to --expect


@handled
def login(
    server: Annotated[str, typer.Option("--server", envvar="DESPINA_SERVER", help="server URL")],
    user: Annotated[
        str | None, typer.Option("--user", help="log in with this user's password instead")
    ] = None,
    expires: Annotated[str, typer.Option(help="lifetime of a password login's token")] = "12h",
) -> None:
    """Save a token to the 0600 token file: one you paste at the prompt, or (--user) a new
    one the server gives for your password. Neither is ever a command-line argument."""
    from despina.control.client import HttpControlClient
    from despina.security.credentials import save_client_token

    if user is not None:
        password = typer.prompt("password", hide_input=True)
        with_password = HttpControlClient(server, anonymous=True)
        closing_at_exit(with_password)
        token, _ = with_password.login(user, password, expires)
    else:
        token = typer.prompt("token", hide_input=True).strip()
    client = HttpControlClient(server, token=token)
    closing_at_exit(client)
    me = client.whoami()
    path = save_client_token(token)
    console.print(f"logged in as {me['user']} ({me['role']}); token saved to {path} (mode 600)")


@handled
def whoami(server: Server = None) -> None:
    """The user, role and scopes of the token the CLI sends."""
    if not server:
        raise ConfigError("whoami asks a server: pass --server URL or set DESPINA_SERVER")
    print_json(client_for(server).whoami())


keys_app = typer.Typer(
    help="The master key that wraps every artifact's data key.", no_args_is_help=True
)


@keys_app.command("rotate")
@handled
def keys_rotate() -> None:
    """Re-wrap every sealed artifact under DESPINA_HOME with a new master key (or with
    DESPINA_MASTER_KEY, the old key in DESPINA_PREVIOUS_MASTER_KEYS); payloads are not
    re-encrypted. Safe to re-run if interrupted."""
    old, new, count = client_for(None).rotate_keys()
    console.print(f"master key {new} now wraps {count} artifact(s) (was {old})")


@keys_app.command("decrypt")
@handled
def keys_decrypt(
    path: Annotated[Path, typer.Argument(help="a sealed file (task output, model, report)")],
    out: Annotated[Path, typer.Option("--out", help="where to write the plaintext")],
) -> None:
    """Write a sealed artifact's plaintext (to open a report in a browser, say)."""
    from despina.security.envelope import read_artifact

    if out.exists():
        raise ConfigError(f"{out} exists; pick a new path (nothing is overwritten)")
    out.write_bytes(read_artifact(path))
    console.print(f"wrote {out}")
