"""``despina review``: what people decided about an audit's samples in the web console."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Annotated

import typer

from despina.cli.common import Server, client_for, console, handled

review_app = typer.Typer(
    help="Reviews made in the web console: export them as a corrections manifest.",
    no_args_is_help=True,
)

#: The corrections manifest's columns: each sample's standing review.
CORRECTION_COLUMNS = ("id", "action", "label", "user", "at")


@review_app.command("export")
@handled
def review_export(
    audit: Annotated[str, typer.Argument(help="the audit's task group")],
    out: Annotated[Path, typer.Option(help="the corrections manifest to write (CSV)")],
    server: Server = None,
) -> None:
    """Write each reviewed sample's standing review (keep, relabel with its new label, drop
    or outlier; who and when) as a CSV manifest."""
    reviews = client_for(server).list_reviews(audit)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(CORRECTION_COLUMNS)
        for r in reviews:
            writer.writerow([r.sample, r.action, r.label or "", r.user, r.at.isoformat()])
    console.print(f"{len(reviews)} reviews of {audit} written to {out}")
