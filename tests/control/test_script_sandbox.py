"""A user script reads its own input and writes its own output folder, and nothing else:
not the store, the key, other groups' outputs, Despina's home, other processes'
environment or memory, local services; it cannot signal Despina's processes. The attacks
run from a real script on a real plane, as root and as an unprivileged user; on a machine
without a sandbox, scripts are refused unless the operator opts in."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from despina.security.sandbox import unavailable

REPO = Path(__file__).resolve().parents[2]
NOBODY = 65534
ATTACKS = 17

pytestmark = pytest.mark.skipif(
    unavailable() is not None, reason=f"no script sandbox on this machine: {unavailable()}"
)


def _drive(home: Path, env: dict[str, str], user: int | None = None, python: str = "") -> Any:
    proc = subprocess.run(
        [python or sys.executable, "-m", "tests.control.sandbox_driver", str(home)],
        cwd=REPO,
        env={**os.environ, "DESPINA_ADMIN_TOKEN": "dsp_" + "x" * 43, **env},
        capture_output=True,
        text=True,
        timeout=240,
        user=user,
        group=user,
        extra_groups=[] if user is not None else None,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _assert_confined(result: dict[str, Any]) -> None:
    assert result["state"] == "SUCCEEDED", result["log"][-3000:]
    outcomes = dict(result["outcomes"])
    assert outcomes.pop("own work") == "read 6 bytes"
    assert len(outcomes) == ATTACKS
    refused = ("PermissionError", "OperationalError")
    allowed = {k: v for k, v in outcomes.items() if v not in refused}
    assert not allowed, allowed
    assert "mine.txt" in result["output_files"] and not result["planted"]


def test_a_script_run_by_root_reaches_nothing_but_its_own(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("the root variant needs root (CI runs as root); this run is unprivileged")
    _assert_confined(_drive(tmp_path / "home", {}))


def _unprivileged_python() -> tuple[str, dict[str, str]]:
    """An interpreter an unprivileged user can run, with this environment's packages (this
    one may live under /root, which only root can enter)."""
    check = [sys.executable, "-c", "import despina"]
    try:
        if subprocess.run(check, user=NOBODY, capture_output=True, cwd="/").returncode == 0:
            return sys.executable, {}
    except PermissionError:
        pass  # the interpreter itself cannot be started by that user
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    system = shutil.which(version, path="/usr/bin:/usr/local/bin")
    if system is None:
        pytest.skip(f"{sys.executable} is out of an unprivileged user's reach and no {version}")
    paths = [p for p in sys.path if "site-packages" in p] + [str(REPO / "src"), str(REPO)]
    return system, {"PYTHONPATH": os.pathsep.join(paths)}


def test_a_script_run_by_an_unprivileged_user_reaches_nothing_but_its_own() -> None:
    if os.geteuid() == 0:
        python, env = _unprivileged_python()
        user: int | None = NOBODY
    else:
        python, env, user = sys.executable, {}, None
    base = Path(tempfile.mkdtemp(prefix="despina-sandbox-"))
    try:
        if user is not None:
            os.chown(base, user, user)
        _assert_confined(_drive(base / "home", env, user=user, python=python))
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_without_a_sandbox_scripts_are_refused_unless_the_operator_opts_in(
    tmp_path: Path,
) -> None:
    refused = _drive(tmp_path / "a", {"NO_LANDLOCK": "1"})
    assert refused["state"] == "FAILED"
    assert "cannot confine user scripts" in refused["reason"]
    assert "DESPINA_UNSAFE_SCRIPTS=1" in refused["reason"]
    assert not refused["outcomes"]  # the script never ran

    # Opted in: the script runs with the worker's rights, and the log says so. The same
    # attacks now succeed: what every script could do before the sandbox.
    unsafe = _drive(tmp_path / "b", {"NO_LANDLOCK": "1", "DESPINA_UNSAFE_SCRIPTS": "1"})
    assert unsafe["state"] == "SUCCEEDED", unsafe["log"][-3000:]
    assert "runs unconfined" in unsafe["log"]
    for attack in ("read the store", "read the master key", "read another group's output"):
        assert unsafe["outcomes"][attack] == "ALLOWED"
