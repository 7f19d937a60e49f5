"""Control-plane fixtures: a real store (SQLite file, or PostgreSQL when reachable), real
worker processes, real scripts and real files."""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from despina.control.plane import ControlPlane
from despina.control.settings import ControlSettings
from despina.control.store import Store
from tests.waiting import wait_for

POSTGRES_URL = os.environ.get(
    "DESPINA_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)

#: The activity log's key for stores opened without a plane (a test's own, fixed).
ACTIVITY_KEY = bytes(range(32))

ROWS_SCRIPT = '''
import os
import threading
import time


def process(batch, context):
    """One row per file: its name and size; DELAY seconds per file (from the env)."""
    delay = float(os.environ.get("DELAY", "0"))
    rows = []
    for i, path in enumerate(batch):
        time.sleep(delay)
        rows.append({"name": os.path.basename(path), "size": os.path.getsize(path)})
        context.progress(i + 1)
    print(f"partition {context.partition} wrote {len(rows)} rows")
    return rows
'''


def make_settings(home: Path, url: str | None = None, **overrides: float) -> ControlSettings:
    values: dict[str, float] = {
        "heartbeat_s": 0.2,
        "stale_after_s": 2.0,
        "poll_s": 0.02,
        "retry_backoff_s": 0.05,
    }
    values.update(overrides)
    return ControlSettings(
        home=home,
        database_url=url or f"sqlite:///{home / 'despina.db'}",
        allowed_roots=(home.resolve(),),
        **values,
    )


def write_files(folder: Path, n: int) -> Path:
    """``n`` small real files in a folder (sizes differ, so rows are checkable)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (folder / f"item-{i:04d}.txt").write_text("x" * (i + 1))
    return folder


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture
def settings(home: Path) -> ControlSettings:
    return make_settings(home)


@pytest.fixture
def plane(settings: ControlSettings) -> Iterator[ControlPlane]:
    p = ControlPlane(settings)
    yield p
    p.close()


@pytest.fixture
def rows_script(home: Path) -> Path:
    path = home / "rows.py"
    path.write_text(ROWS_SCRIPT)
    return path


def postgres_url() -> Iterator[str]:
    """A fresh schema on the test PostgreSQL server, dropped afterwards (or a skip)."""
    try:
        import psycopg
    except ImportError:
        pytest.skip("psycopg is not installed: pip install 'despina[postgres]'")
    plain = POSTGRES_URL.replace("postgresql+psycopg://", "postgresql://")
    try:
        conn = psycopg.connect(plain, connect_timeout=3, autocommit=True)
    except psycopg.OperationalError as exc:
        pytest.skip(f"no PostgreSQL server reachable at {plain}: {exc}".splitlines()[0])
    schema = f"despina_test_{uuid.uuid4().hex[:12]}"
    conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    finally:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")
        conn.close()


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """The store contract runs against both backends."""
    if request.param == "sqlite":
        s = Store(f"sqlite:///{tmp_path / 'store.db'}", activity_key=ACTIVITY_KEY)
        yield s
        s.close()
        return
    gen = postgres_url()
    url = next(gen)
    s = Store(url, activity_key=ACTIVITY_KEY)
    try:
        yield s
    finally:
        s.close()
        next(gen, None)


@contextlib.contextmanager
def one_ray_at_a_time() -> Iterator[None]:
    """Held while a test module's Ray runs: under ``make test``'s two test processes, a
    second local Ray would find the first (``ray.init`` joins the cluster this machine
    started last) instead of starting its own."""
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID", str(os.getpid()))
    with open(Path(tempfile.gettempdir()) / f"despina-tests-ray-{run}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@pytest.fixture(scope="module")
def ray_session() -> Iterator[None]:
    """One local Ray instance per test module (settings from ENGINES.md), shut down after
    it so Ray's processes do not compete with later tests for the two cores."""
    ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'despina[ray]'")
    import logging

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    with one_ray_at_a_time():
        ray.init(
            num_cpus=2,
            include_dashboard=False,
            object_store_memory=256 * 2**20,
            logging_level=logging.WARNING,
            log_to_driver=False,
        )
        yield
        ray.shutdown()


#: Each node of the two-node Ray cluster: one CPU, a small object store.
RAY_NODE = {"num_cpus": 1, "object_store_memory": 128 * 2**20}


@pytest.fixture(scope="module")
def two_node_ray_cluster() -> Iterator[Any]:
    """A Ray cluster of two nodes on this machine (a head and a worker node, one CPU each,
    each its own raylet and object store): ``ray.cluster_utils.Cluster``, connected. A test
    that removes its worker node adds one back."""
    ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'despina[ray]'")
    import logging

    from ray.cluster_utils import Cluster

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    with one_ray_at_a_time():
        cluster = Cluster(initialize_head=True,
                          head_node_args={**RAY_NODE, "include_dashboard": False})  # fmt: skip
        try:
            cluster.add_node(**RAY_NODE)
            cluster.wait_for_nodes()
            ray.init(address=cluster.address, logging_level=logging.WARNING, log_to_driver=False)
            yield cluster
        finally:
            ray.shutdown()
            cluster.shutdown()


@pytest.fixture(scope="module")
def two_node_ray(two_node_ray_cluster: Any) -> str:
    """The two-node Ray cluster's head address."""
    return str(two_node_ray_cluster.address)


def admin_token(store: Any) -> str:
    """An admin token on ``store``: the bootstrap one on an empty store, else a new one."""
    return store.bootstrap_admin() or store.issue_token("admin")[0]


class ThreadServer:
    """The real API on a loopback port, served by uvicorn in a thread.

    ``token`` is an admin token (bootstrapped on the plane's store, or given with ``app``);
    ``headers`` carry it, ``http()`` is a client that sends it."""

    def __init__(
        self,
        plane: ControlPlane | None = None,
        app: Any = None,
        token: str | None = None,
        **uvicorn_options: Any,
    ) -> None:
        import socket

        import uvicorn

        from despina.serving.api import create_app

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if app is None:
            assert plane is not None
            app = create_app(plane)
            token = token or admin_token(plane.store)
        self.token = token or ""
        self.headers = {"Authorization": f"Bearer {self.token}"}
        config = uvicorn.Config(
            app, host="127.0.0.1", port=port, log_level="error", **uvicorn_options
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        scheme = "https" if uvicorn_options.get("ssl_certfile") else "http"
        self.url = f"{scheme}://127.0.0.1:{port}"
        wait_for(lambda: self.server.started, 30)

    def http(self, **kw: Any) -> httpx.Client:
        kw.setdefault("timeout", 30)
        return httpx.Client(base_url=self.url, headers=self.headers, **kw)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)


@pytest.fixture
def api_server(plane: ControlPlane) -> Iterator[ThreadServer]:
    server = ThreadServer(plane)
    yield server
    server.stop()
