"""What every command group shares: the consoles, the ``--server`` and ``--json`` options,
the error handler, the client and JSON printing.

Every control-plane command works on the embedded store (``DESPINA_HOME``) or, with ``--server URL``
(or ``DESPINA_SERVER``), through a running ``despina server start``. Errors print one line
and exit non-zero (the code of the error class, see ``despina.core.errors``).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from typing import Annotated, Any, TypeVar

import typer
from pydantic import BaseModel, ValidationError
from rich.console import Console
from rich.table import Table

from despina.control.client import HttpControlClient
from despina.control.plane import ControlPlane
from despina.core.errors import DespinaError

console = Console()
err = Console(stderr=True)


Server = Annotated[
    str | None,
    typer.Option("--server", envvar="DESPINA_SERVER", help="server URL (default: local store)"),
]
AsJson = Annotated[bool, typer.Option("--json", help="print JSON")]
#: The event loop both servers run on: the standard library's, not uvloop. Under uvloop,
#: `despina serve` on a cheap model at concurrency 32 left some requests unanswered for
#: over a second although the app had answered them long before; on the asyncio loop the
#: tail stayed short at the same throughput (docs/benchmarks.md, serving).
SERVER_LOOP = "asyncio"
F = TypeVar("F", bound=Callable[..., Any])
C = TypeVar("C")


def print_findings(counts: dict[str, Any], health: float, accuracy: float | None = None) -> None:
    """An audit's findings as a table: samples per finding, then the health score."""
    table = Table(show_header=True)
    table.add_column("finding")
    table.add_column("samples", justify="right")
    for key, value in counts.items():
        table.add_row(key.replace("_", " "), str(value))
    if accuracy is not None:
        table.add_row("out-of-fold model accuracy", f"{accuracy:.1%}")
    table.add_row("[bold]health score", f"[bold]{health:.1%}")
    console.print(table)


def fail(message: str, code: int) -> typer.Exit:
    """Print ``message`` as the command's one error line; the exit to raise."""
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def handled(fn: F) -> F:
    """Turn Despina and validation errors into one line on stderr and an exit code, and
    close the clients the command opened."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except DespinaError as exc:
            err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except ValidationError as exc:
            first = exc.errors()[0]
            msg = str(first["msg"]).removeprefix("Value error, ")
            where = ".".join(str(p) for p in first["loc"])
            text = f"invalid {where}: {msg}" if where else msg
            err.print(f"[bold red]error:[/] {text}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        finally:
            while _open:
                _open.pop().close()

    return wrapper  # type: ignore[return-value]


_open: list[Any] = []


def client_for(server: str | None) -> Any:
    """The server's client, or the embedded control plane; closed when the command ends."""
    return closing_at_exit(HttpControlClient(server) if server else ControlPlane())


def closing_at_exit(client: C) -> C:
    """Close ``client`` when the command ends, however it ends."""
    _open.append(client)
    return client


def print_json(data: Any) -> None:
    console.print_json(json.dumps(data, default=str))


def print_listing(
    items: Sequence[BaseModel],
    as_json: bool,
    columns: Sequence[str],
    row: Callable[[Any], Sequence[Any]],
) -> None:
    """What every ``ls`` prints: every field of every item as JSON, or a table of the
    columns ``row`` gives for each."""
    if as_json:
        print_json([item.model_dump(mode="json") for item in items])
        return
    table = Table(*columns)
    for item in items:
        table.add_row(*row(item))
    console.print(table)
