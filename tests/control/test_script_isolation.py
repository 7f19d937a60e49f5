"""A user script sees only the environment its group declares: never the store's URL,
an admin token or the master key, even when the worker that runs it holds them."""

from __future__ import annotations

import base64
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from despina.control.models import ClusterSpec, GroupSpec, TaskGroup
from despina.control.plane import ControlPlane
from despina.control.states import TaskState
from tests.control.fixtures import write_files

ENV_SCRIPT = '''
import os


def process(batch, context):
    """One row per environment variable this process can see."""
    return [{"key": k, "value": v} for k, v in sorted(os.environ.items())]
'''


def _script_group(
    plane: ControlPlane, home: Path, name: str, script: str, files: int = 1, **kw: Any
) -> TaskGroup:
    """Group ``name`` running ``script`` over ``files`` small files, on cluster ``c`` (made
    on first use, one worker)."""
    path = home / f"{name}.py"
    path.write_text(script)
    if not any(c.name == "c" for c in plane.list_clusters()):
        plane.create_cluster(ClusterSpec(name="c", workers=1))
    source = str(write_files(home / f"d-{name}", files))
    return plane.create_group(
        GroupSpec(name=name, cluster="c", source=source, script=str(path), **kw)
    )


def test_a_script_sees_its_declared_env_and_no_secrets(
    plane: ControlPlane, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secrets = {
        "DESPINA_ADMIN_TOKEN": "dsp_" + "s" * 43,
        "DESPINA_MASTER_KEY": base64.b64encode(os.urandom(32)).decode(),
        "DESPINA_DATABASE_URL": plane.settings.database_url,
        "AWS_SECRET_ACCESS_KEY": "server-side-secret",
    }
    for k, v in secrets.items():
        monkeypatch.setenv(k, v)
    _script_group(plane, home, "g", ENV_SCRIPT, files=2, env={"FOO": "bar"})
    (task,) = plane.start_group("g", wait=True)
    assert task.state is TaskState.SUCCEEDED, plane.task_logs(task.id)[0]
    seen = dict(zip(*plane.group_result("g").to_pydict().values(), strict=True))
    assert seen["FOO"] == "bar"
    assert not {k for k in seen if k.startswith("DESPINA_")}
    assert not set(secrets) & set(seen)
    values = " ".join(seen.values())
    assert not any(v in values for v in secrets.values())
    # The worker itself had them (it seals the output with the master key).
    part = Path(task.outputs[0]).read_bytes()
    assert part.startswith(b"DSPENC1")


SLOW_SCRIPT = """
import time


def main(context):
    time.sleep(3)
"""


def _workers() -> list[tuple[str, str]]:
    """Every despina worker's command line and environment, as root reads them."""
    seen = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            if "despina.control.worker" in cmdline:
                seen.append((cmdline, Path(f"/proc/{pid}/environ").read_bytes().decode()))
        except OSError:
            continue
    return seen


def test_a_worker_has_no_store_url_on_its_command_line_and_no_admin_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store's URL (with PostgreSQL, its password) came as a worker's argument, so
    ``ps`` saw it; the admin token was inherited. Read what a running worker holds."""
    from tests.control.fixtures import make_settings
    from tests.waiting import wait_for

    home = tmp_path / "s3cret-home"
    home.mkdir()
    monkeypatch.setenv("DESPINA_ADMIN_TOKEN", "dsp_" + "a" * 43)
    plane = ControlPlane(make_settings(home))
    try:
        _script_group(plane, home, "g", SLOW_SCRIPT)
        with ThreadPoolExecutor(1) as pool:
            run = pool.submit(plane.start_group, "g", wait=True)
            seen = wait_for(_workers, 20, 0.05, "a running worker")
            (task,) = run.result()
        assert task.state is TaskState.SUCCEEDED, plane.task_logs(task.id)[0]
        for cmdline, environ in seen:
            assert "s3cret-home" not in cmdline and "sqlite" not in cmdline, cmdline
            assert "DESPINA_ADMIN_TOKEN" not in environ and "DESPINA_DATABASE_URL" not in environ
    finally:
        plane.close()


def test_a_store_that_cannot_be_opened_does_not_print_its_password() -> None:
    from despina.control.store import Store
    from despina.core.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        Store("postgresql+psycopg://despina:hunter2@127.0.0.1:1/despina")
    assert "hunter2" not in str(err.value) and "***" in str(err.value)


def test_home_logs_and_outputs_are_owner_only(tmp_path: Path) -> None:
    """An existing DESPINA_HOME that others can enter is tightened to 0700; a task's log
    and output, and the folders made for them, are 0600 and 0700."""
    import stat

    from tests.control.fixtures import make_settings

    home = tmp_path / "home"
    home.mkdir(mode=0o755)
    home.chmod(0o755)
    plane = ControlPlane(make_settings(home))
    try:
        assert stat.S_IMODE(home.stat().st_mode) == 0o700
        _script_group(plane, home, "g", ENV_SCRIPT, files=2)
        (task,) = plane.start_group("g", wait=True)
        assert task.state is TaskState.SUCCEEDED
        log, output = Path(task.log_path), Path(task.outputs[0])
        for path, mode in [
            (log, 0o600),
            (output, 0o600),
            (log.parent, 0o700),
            (output.parent, 0o700),
        ]:
            assert stat.S_IMODE(path.stat().st_mode) == mode, (path, oct(path.stat().st_mode))
    finally:
        plane.close()


def test_a_partition_swapped_moved_or_replaced_by_a_plain_file_is_refused(
    plane: ControlPlane, home: Path
) -> None:
    """Sealed partitions are bound to their group, partition and attempt: another group's
    file, a copy of a sibling partition (rows duplicated), an earlier attempt's file (a
    stale worker's late write) or a plain Parquet file put in a partition's place fails
    to open, instead of injecting rows."""
    import shutil

    import pyarrow as pa
    import pyarrow.parquet as pq

    from despina.core.errors import IntegrityError

    for name in ("ga", "gb"):
        _script_group(plane, home, name, ENV_SCRIPT, files=2, partitions=2)
        plane.start_group(name, wait=True)
    rows = plane.group_result("ga").num_rows
    part = {(t.group, t.partition): Path(t.outputs[0]) for t in plane.list_tasks()}
    original = part["ga", 0].read_bytes()
    attacks = {
        "another group's partition": lambda: shutil.copy(part["gb", 0], part["ga", 0]),
        "a sibling partition": lambda: shutil.copy(part["ga", 1], part["ga", 0]),
        "a plain Parquet file": lambda: pq.write_table(pa.table({"key": ["x"]}), part["ga", 0]),
    }
    for what, attack in attacks.items():
        attack()
        with pytest.raises(IntegrityError):
            plane.group_result("ga")
        part["ga", 0].write_bytes(original)
        assert plane.group_result("ga").num_rows == rows, what


FLAKY_SCRIPT = """
import os


def process(batch, context):
    marker = os.path.join(context.output, "tried")
    if not os.path.exists(marker):
        open(marker, "w").close()
        raise RuntimeError("the first attempt fails")
    return [{"attempt": context.attempt}]
"""


def test_a_stale_attempts_late_write_is_refused(plane: ControlPlane, home: Path) -> None:
    """A worker thought dead may still write its attempt's file after a retry succeeded:
    the file is bound to its attempt, so it fails to open instead of replacing rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from despina.control.runtime import partition_context
    from despina.core.errors import IntegrityError
    from despina.security.envelope import write_sealed

    _script_group(plane, home, "g", FLAKY_SCRIPT, max_retries=1)
    (task,) = plane.start_group("g", wait=True)
    assert task.state is TaskState.SUCCEEDED and task.attempt == 2
    assert plane.group_result("g").to_pydict() == {"attempt": [2]}
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table({"attempt": [1]}), sink)
    stale = sink.getvalue().to_pybytes()
    write_sealed(Path(task.outputs[0]), stale, plane.keyring, partition_context("g", 0, 1))
    with pytest.raises(IntegrityError):
        plane.group_result("g")


def test_env_values_are_sealed_bound_to_their_group_and_survive_key_rotation(
    plane: ControlPlane, home: Path
) -> None:
    from despina.core.errors import IntegrityError

    for name in ("g", "h"):
        group = _script_group(plane, home, name, ENV_SCRIPT, env={"TOKEN": name * 9})
        assert group.env == {"TOKEN": "***"}
    stored = plane.store.get_group("g").env["TOKEN"]
    assert stored.startswith("sealed:") and "ggggggggg" not in stored
    plane.rotate_keys()
    assert plane.group_env("g") == {"TOKEN": "g" * 9}
    (task,) = plane.start_group("g", wait=True)
    assert task.state is TaskState.SUCCEEDED, plane.task_logs(task.id)[0]
    seen = dict(zip(*plane.group_result("g").to_pydict().values(), strict=True))
    assert seen["TOKEN"] == "g" * 9
    assert "g" * 9 not in plane.task_logs(task.id)[0]
    # A sealed value copied into another group's env does not open there.
    plane.store.set_group_env("h", {"TOKEN": stored})
    with pytest.raises(IntegrityError):
        plane.group_env("h")
