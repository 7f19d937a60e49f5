"""A task group's ``env`` values are secrets until proven otherwise: sealed at rest with
the master key (each bound to its group and name, so a value copied to another group or
variable fails to open), opened only by the worker that runs the group's tasks and for
the callers allowed to see them (admins and operators), shown as ``***`` to the rest."""

from __future__ import annotations

import base64

from despina.core.errors import TaskError
from despina.security.envelope import Keyring, rewrap, seal, unseal

SEALED = "sealed:"
MASK = "***"


def _context(group: str, key: str) -> str:
    return f"group {group} env {key}"


def seal_env(group: str, env: dict[str, str], ring: Keyring) -> dict[str, str]:
    """Every value sealed (values already sealed are kept as they are)."""
    return {
        k: v if v.startswith(SEALED) else SEALED + _b64(seal(v.encode(), ring, _context(group, k)))
        for k, v in env.items()
    }


def open_env(group: str, env: dict[str, str], ring: Keyring | None) -> dict[str, str]:
    """Every value in the clear; a sealed one with no key to open it is a TaskError."""
    opened = {}
    for key, value in env.items():
        if value.startswith(SEALED):
            if ring is None:
                raise TaskError(
                    f"group {group}'s env is sealed but this worker has no master key; run "
                    "it on a worker of the plane that created it"
                )
            blob = base64.b64decode(value[len(SEALED) :])
            clear = unseal(blob, ring, f"env {key} of group {group}", _context(group, key))
            value = clear.decode()
        opened[key] = value
    return opened


def rewrap_env(env: dict[str, str], ring: Keyring) -> dict[str, str]:
    """Sealed values re-wrapped under ``ring``'s current key (key rotation)."""
    return {
        k: SEALED + _b64(rewrap(base64.b64decode(v[len(SEALED) :]), ring))
        if v.startswith(SEALED)
        else v
        for k, v in env.items()
    }


def is_sealed_value(value: str) -> bool:
    return value.startswith(SEALED)


def masked(env: dict[str, str]) -> dict[str, str]:
    return dict.fromkeys(env, MASK)


def _b64(blob: bytes) -> str:
    return base64.b64encode(blob).decode()
