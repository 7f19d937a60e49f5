"""Every setting of the security layer, read from the environment here and nowhere else:
master keys, the client's token and CA bundle, the first admin's token.

The table of all ``DESPINA_`` variables is in docs/configuration.md.
"""

from __future__ import annotations

import os
from pathlib import Path


def master_keys_from_env() -> tuple[str, list[str]] | None:
    """``DESPINA_MASTER_KEY`` and the comma-separated ``DESPINA_PREVIOUS_MASTER_KEYS``
    (base64), or None when no key is given in the environment."""
    current = os.environ.get("DESPINA_MASTER_KEY")
    if not current:
        return None
    previous = os.environ.get("DESPINA_PREVIOUS_MASTER_KEYS", "")
    return current, [p for p in previous.split(",") if p]


def key_file_from_env() -> Path | None:
    """``DESPINA_KEY_FILE``: set by executors for their workers (the plane's key file)."""
    given = os.environ.get("DESPINA_KEY_FILE")
    return Path(given) if given else None


def client_token_from_env() -> str | None:
    return os.environ.get("DESPINA_TOKEN", "").strip() or None


def token_file() -> Path:
    """``DESPINA_TOKEN_FILE``, else ``$XDG_CONFIG_HOME/despina/token``."""
    given = os.environ.get("DESPINA_TOKEN_FILE")
    if given:
        return Path(given).expanduser()
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "despina" / "token"


def ca_bundle_from_env() -> str | None:
    """``DESPINA_CA_BUNDLE``: the CA a client trusts for a server with a private one."""
    return os.environ.get("DESPINA_CA_BUNDLE") or None


def admin_token_from_env() -> str | None:
    """``DESPINA_ADMIN_TOKEN``: the first admin's token, instead of a printed one."""
    return os.environ.get("DESPINA_ADMIN_TOKEN") or None


def activity_key_from_env() -> str | None:
    """``DESPINA_ACTIVITY_KEY``: base64 of the activity log's MAC key, instead of the file
    ``activity.key`` in Despina's home (servers that share one store share this key)."""
    return os.environ.get("DESPINA_ACTIVITY_KEY") or None
