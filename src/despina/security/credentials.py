"""Where a client finds its token: ``DESPINA_TOKEN``, or a file only its owner can read
(``DESPINA_TOKEN_FILE``, default ``~/.config/despina/token``, written by
``despina login``). Never a command-line argument, which would land in shell history."""

from __future__ import annotations

from pathlib import Path

from despina.security.envelope import check_private, write_private
from despina.security.settings import client_token_from_env, token_file

__all__ = ["client_token", "save_client_token", "token_file"]


def client_token() -> str | None:
    """The token to send, or None; a token file others can read is refused."""
    env = client_token_from_env()
    if env:
        return env
    path = token_file()
    if not path.is_file():
        return None
    check_private(path)
    return path.read_text(encoding="utf-8").strip() or None


def save_client_token(token: str) -> Path:
    path = token_file()
    write_private(path, token.strip() + "\n")
    return path
