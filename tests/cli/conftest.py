"""Every CLI test runs on its own embedded store, never a user's or a server's."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _home(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DESPINA_HOME", str(home))
    monkeypatch.setenv("DESPINA_ALLOWED_ROOTS", str(home))
    monkeypatch.delenv("DESPINA_DATABASE_URL", raising=False)
    monkeypatch.delenv("DESPINA_SERVER", raising=False)
    monkeypatch.delenv("DESPINA_TOKEN", raising=False)
    monkeypatch.delenv("DESPINA_MASTER_KEY", raising=False)
    monkeypatch.setenv("DESPINA_TOKEN_FILE", str(home / "client-token"))
