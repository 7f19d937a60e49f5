"""``despina server start``: the REST API and the scheduler in one process."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from despina.cli.common import (
    SERVER_LOOP,
    client_for,
    err,
    handled,
)
from despina.core.errors import ConfigError

server_app = typer.Typer(
    help="Run the control-plane server (REST API + scheduler).", no_args_is_help=True
)


@server_app.command("start")
@handled
def server_start(
    host: Annotated[str, typer.Option(help="interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8600,
    tls_cert: Annotated[
        Path | None, typer.Option("--tls-cert", help="PEM certificate (chain): serve HTTPS")
    ] = None,
    tls_key: Annotated[Path | None, typer.Option("--tls-key", help="PEM private key")] = None,
) -> None:
    """Serve the REST API and run the scheduler until interrupted.

    The first start on an empty store creates user 'admin' and prints its token once
    (or takes DESPINA_ADMIN_TOKEN), and creates the master key that encrypts artifacts.
    """
    import uvicorn

    from despina.control.store.engine import masked
    from despina.security.process import harden_process
    from despina.serving.access_log import configure_json_logging
    from despina.serving.api import create_app
    from despina.serving.settings import proxy_options

    tls = _tls_options(tls_cert, tls_key)
    harden_process()  # secrets in memory and environment: no /proc reads, no core dumps
    plane = client_for(None)
    bootstrap_admin(plane.store)
    if plane.settings.encrypt:
        _ = plane.keyring  # created (0600) on the first start
    scheme = "https" if tls else "http"
    _warn_if_exposed(host, tls)
    err.print(
        f"Despina server on {scheme}://{host}:{port} (store: {masked(plane.settings.database_url)})"
    )
    configure_json_logging()
    uvicorn.run(
        create_app(plane),
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        loop=SERVER_LOOP,
        ssl_certfile=tls.get("ssl_certfile"),
        ssl_keyfile=tls.get("ssl_keyfile"),
        timeout_graceful_shutdown=10,
        **proxy_options(),
    )


def _tls_options(cert: Path | None, key: Path | None) -> dict[str, str]:
    if (cert is None) != (key is None):
        raise ConfigError("TLS needs both --tls-cert and --tls-key")
    if cert is None or key is None:
        return {}
    for p in (cert, key):
        if not p.is_file():
            raise ConfigError(f"{p} does not exist")
    from despina.security.envelope import check_private

    check_private(key)
    return {"ssl_certfile": str(cert), "ssl_keyfile": str(key)}


def _warn_if_exposed(host: str, tls: dict[str, str]) -> None:
    if host not in ("127.0.0.1", "localhost", "::1") and not tls:
        err.print(
            f"[yellow]warning:[/] listening on {host} without TLS: tokens cross the network "
            "in clear text; pass --tls-cert/--tls-key or put a TLS proxy in front"
        )


def bootstrap_admin(store: Any) -> None:
    """An empty store gets user 'admin' with a token, printed once (or DESPINA_ADMIN_TOKEN)."""

    from despina.security.settings import admin_token_from_env
    from despina.security.tokens import check_given_token

    given = admin_token_from_env()
    token = store.bootstrap_admin(check_given_token(given) if given else None)
    if token is None:
        return
    store.record_activity("server", "bootstrap", "user admin", "ok")
    if given:
        err.print("created user 'admin' with the token in DESPINA_ADMIN_TOKEN")
    else:
        err.print(
            "created user 'admin'; its token is shown [bold]once[/] (save it, e.g. "
            "despina login; send it as 'Authorization: Bearer TOKEN'):\n"
            f"  {token}",
            highlight=False,
            soft_wrap=True,
        )
