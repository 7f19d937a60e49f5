from __future__ import annotations

import pytest
from pydantic import ValidationError

from despina.core.config import AuditConfig, default_home


def test_config_is_frozen_and_forbids_unknown_keys() -> None:
    cfg = AuditConfig()
    with pytest.raises(ValidationError):
        cfg.folds = 3  # type: ignore[misc]
    with pytest.raises(ValidationError):
        AuditConfig(fold=3)  # type: ignore[call-arg]


@pytest.mark.parametrize("kw", [{"folds": 1}, {"workers": 0}, {"checks": ()}, {"image_size": 4}])
def test_invalid_values_are_refused(kw: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        AuditConfig(**kw)  # type: ignore[arg-type]


def test_home_follows_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DESPINA_HOME", "/tmp/somewhere")
    assert str(default_home()) == "/tmp/somewhere"
