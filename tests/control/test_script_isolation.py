"""A user script sees only the environment its group declares: never the store's URL,
an admin token or the master key, even when the worker that runs it holds them."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from despina.control.models import ClusterSpec, GroupSpec
from despina.control.plane import ControlPlane
from despina.control.states import TaskState
from tests.control.fixtures import write_files

ENV_SCRIPT = '''
import os


def process(batch, context):
    """One row per environment variable this process can see."""
    return [{"key": k, "value": v} for k, v in sorted(os.environ.items())]
'''


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
    script = home / "env.py"
    script.write_text(ENV_SCRIPT)
    plane.create_cluster(ClusterSpec(name="c", workers=1))
    plane.create_group(
        GroupSpec(
            name="g",
            cluster="c",
            source=str(write_files(home / "d", 2)),
            script=str(script),
            env={"FOO": "bar"},
        )
    )
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
