"""Settings of the control plane, read from ``DESPINA_*`` environment variables."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field

from despina.core.config import FrozenModel, default_home, env_flag

#: Remote schemes a source may use unless the operator enables more (DESPINA_SOURCE_SCHEMES).
DEFAULT_REMOTE_SCHEMES = ("s3",)


class ControlSettings(FrozenModel):
    """Where state lives and how the scheduler behaves.

    ``DESPINA_HOME`` (store, logs, outputs, ``master.key``), ``DESPINA_DATABASE_URL``
    (default: SQLite under the home), ``DESPINA_ALLOWED_ROOTS`` (``os.pathsep``-separated
    folders a data source may come from; default: the home directory, the working directory and
    ``DESPINA_HOME``).
    """

    home: Path
    database_url: str
    allowed_roots: tuple[Path, ...]
    heartbeat_s: float = Field(2.0, gt=0)
    stale_after_s: float = Field(30.0, gt=0, description="a RUNNING task silent this long died")
    poll_s: float = Field(
        0.25,
        gt=0,
        description="longest wait for a task to end between scheduler rounds (an ending "
        "task wakes the scheduler at once; this bounds how late a new group or a cancel "
        "is seen)",
    )
    retry_backoff_s: float = Field(1.0, ge=0, description="first retry delay; doubles each time")
    source_schemes: tuple[str, ...] = Field(
        DEFAULT_REMOTE_SCHEMES, description="remote schemes a data source may use"
    )
    encrypt: bool = Field(
        True, description="seal task outputs, models and reports (DESPINA_ENCRYPT=off: plain)"
    )

    @classmethod
    def from_env(cls) -> ControlSettings:
        home = default_home()
        url = os.environ.get("DESPINA_DATABASE_URL") or f"sqlite:///{home / 'despina.db'}"
        roots_env = os.environ.get("DESPINA_ALLOWED_ROOTS")
        if roots_env:
            roots = tuple(Path(p).expanduser() for p in roots_env.split(os.pathsep) if p)
        else:
            roots = (Path.home(), Path.cwd(), home)
        extra: dict[str, float] = {}
        for key, env in (
            ("stale_after_s", "DESPINA_STALE_AFTER"),
            ("heartbeat_s", "DESPINA_HEARTBEAT"),
            ("retry_backoff_s", "DESPINA_RETRY_BACKOFF"),
        ):
            if os.environ.get(env):
                extra[key] = float(os.environ[env])
        schemes = os.environ.get("DESPINA_SOURCE_SCHEMES", "")
        extra_schemes = tuple(s.strip().lower() for s in schemes.split(",") if s.strip())
        return cls(
            home=home,
            source_schemes=(*DEFAULT_REMOTE_SCHEMES, *extra_schemes),
            encrypt=env_flag("DESPINA_ENCRYPT", True),
            database_url=url,
            allowed_roots=tuple(r.resolve() for r in roots),
            **extra,
        )

    @property
    def key_file(self) -> Path:
        return self.home / "master.key"

    @property
    def sealing_env(self) -> dict[str, str]:  # read back by worker_seals
        """What workers need to seal task outputs like this plane does."""
        if not self.encrypt:
            return {"DESPINA_ENCRYPT": "off"}
        return {"DESPINA_ENCRYPT": "on", "DESPINA_KEY_FILE": str(self.key_file)}

    @property
    def activity_key_file(self) -> Path:
        return self.home / "activity.key"

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    @property
    def outputs_dir(self) -> Path:
        return self.home / "outputs"


def worker_seals() -> bool:
    """Whether this worker seals what its tasks write: the executor sets
    ``DESPINA_ENCRYPT=on`` (and ``DESPINA_KEY_FILE``) from the plane's settings."""
    return os.environ.get("DESPINA_ENCRYPT") == "on"


def unsafe_scripts() -> bool:
    """``DESPINA_UNSAFE_SCRIPTS=1``: run scripts unconfined where no sandbox is available."""
    return env_flag("DESPINA_UNSAFE_SCRIPTS", False)


def script_network() -> bool:
    """``DESPINA_SCRIPT_NETWORK=1``: let confined scripts open TCP connections."""
    return env_flag("DESPINA_SCRIPT_NETWORK", False)
