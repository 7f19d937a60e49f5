"""An ``s3://`` data source end to end: a real S3 API on loopback (moto's server), read
through fsspec and s3fs by the partition planner, a built-in job and a user script."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from despina.control.models import ClusterSpec, GroupSpec
from despina.control.plane import ControlPlane
from despina.control.states import TaskState
from tests.conftest import write_digits

moto_server = pytest.importorskip(
    "moto.server", reason="the S3 test needs moto[server] and s3fs: pip install -e '.[dev]'"
)
pytest.importorskip("s3fs", reason="s3:// sources need s3fs: pip install 'despina[s3]'")


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A local S3 endpoint; the AWS variables point boto (and s3fs) at it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    env = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    yield env["AWS_ENDPOINT_URL"]
    server.stop()


def _upload(folder: Path, bucket: str) -> int:
    import s3fs

    fs = s3fs.S3FileSystem()
    fs.mkdir(bucket)
    files = sorted(p for p in folder.rglob("*.png"))
    for p in files:
        fs.put(str(p), f"{bucket}/digits/{p.parent.name}/{p.name}")
    return len(files)


SIZES_SCRIPT = """
import fsspec


def process(batch, context):
    rows = []
    for path in batch:
        with fsspec.open(path, "rb") as fh:
            rows.append({"path": path, "bytes": len(fh.read())})
    return rows
"""


def test_an_s3_folder_runs_as_partitions_with_a_builtin_job_and_a_script(
    s3: str, plane: ControlPlane, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A script that reads S3 itself needs the network, which scripts lack unless allowed.
    monkeypatch.setenv("DESPINA_SCRIPT_NETWORK", "on")
    n = _upload(write_digits(home / "digits", per_class=3, classes=4), "bucket")
    plane.create_cluster(ClusterSpec(name="c", workers=2))
    source = "s3://bucket/digits"
    plane.create_group(
        GroupSpec(
            name="prep",
            cluster="c",
            source=source,
            job="preprocess",
            config={"size": 8},
            partitions=3,
        )
    )
    tasks = plane.start_group("prep", wait=True)
    assert [t.state for t in tasks] == [TaskState.SUCCEEDED] * 3, plane.task_logs(tasks[0].id)
    rows = plane.group_result("prep").to_pandas()
    assert len(rows) == n == 12 and rows["id"].is_unique
    assert sorted(set(rows["label"])) == ["0", "1", "2", "3"]
    assert rows["error"].isna().all()
    # A script reads the same objects itself; it gets the S3 settings only because the
    # group declares them (scripts never inherit the server's environment).
    (home / "sizes.py").write_text(SIZES_SCRIPT)
    declared = {k: v for k, v in __import__("os").environ.items() if k.startswith("AWS_")}
    plane.create_group(
        GroupSpec(
            name="sizes",
            cluster="c",
            source=source,
            script=str(home / "sizes.py"),
            partitions=2,
            env=declared,
        )
    )
    tasks = plane.start_group("sizes", wait=True)
    assert {t.state for t in tasks} == {TaskState.SUCCEEDED}, plane.task_logs(tasks[0].id)
    sizes = plane.group_result("sizes").to_pandas()
    assert len(sizes) == 12 and (sizes["bytes"] > 50).all()
    assert sizes["path"].str.startswith("s3://bucket/digits/").all()
