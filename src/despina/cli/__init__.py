"""The ``despina`` command line (Typer); nothing imports it."""
