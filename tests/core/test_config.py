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


def test_workers_default_to_the_cores_this_process_may_use() -> None:
    import os

    from despina.core.config import MAX_AUTO_WORKERS

    cores = len(os.sched_getaffinity(0))
    assert AuditConfig().workers is None
    assert AuditConfig().worker_count == min(cores, MAX_AUTO_WORKERS)
    assert AuditConfig(workers=3).worker_count == 3
