from __future__ import annotations

import pytest

from despina.core import errors
from despina.core.registry import Registry


@pytest.mark.parametrize(
    ("exc", "builtin"),
    [
        (errors.ConfigError, ValueError),
        (errors.DataError, ValueError),
        (errors.PathEscapeError, ValueError),
        (errors.NotFoundError, LookupError),
        (errors.ModelError, RuntimeError),
        (errors.CheckError, RuntimeError),
    ],
)
def test_each_error_is_a_despina_error_and_its_builtin(exc: type, builtin: type) -> None:
    assert issubclass(exc, errors.DespinaError)
    assert issubclass(exc, builtin)


def test_path_escape_is_a_data_error() -> None:
    assert issubclass(errors.PathEscapeError, errors.DataError)


class _A:
    name = "a"


class _B:
    name = "a"


def test_registry_registers_and_refuses_a_second_class_with_the_same_name() -> None:
    reg: Registry[type] = Registry("thing")
    reg.register(_A)
    assert reg.get("a") is _A
    assert "a" in reg
    with pytest.raises(errors.ConfigError, match="already registered"):
        reg.register(_B)


def test_registry_unknown_name_lists_the_known_ones() -> None:
    reg: Registry[type] = Registry("thing")
    reg.register(_A)
    with pytest.raises(errors.NotFoundError, match="known: a"):
        reg.get("zzz")


def test_registry_needs_a_name() -> None:
    class Nameless:
        pass

    with pytest.raises(errors.ConfigError):
        Registry[type]("thing").register(Nameless)
