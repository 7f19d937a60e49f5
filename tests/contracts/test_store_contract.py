"""One store contract, run against SQLite and a real PostgreSQL server."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from despina.control.models import ClusterSpec, GroupSpec
from despina.control.states import TaskState
from despina.control.store import Store
from despina.control.store.tables import Base
from despina.core.errors import ConflictError, NotFoundError, StateError

PARTS = [{"kind": "rows", "start": i * 10, "stop": (i + 1) * 10, "total": 10} for i in range(3)]


def _group(store: Store, name: str = "g", started: bool = True) -> list[int]:
    if name == "g":
        store.create_cluster(ClusterSpec(name="c"))
    store.create_group(
        GroupSpec(name=name, cluster="c", source="builtin:digits", job="preprocess", partitions=3),
        output=f"/tmp/out/{name}",
    )
    if not started:
        return []
    return [t.id for t in store.start_group(name, PARTS, Path("/tmp/logs"))]


def test_migrations_create_exactly_the_tables(store: Store) -> None:
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_clusters_are_unique_and_found_by_name(store: Store) -> None:
    created = store.create_cluster(ClusterSpec(name="c", workers=3))
    assert store.get_cluster("c") == created
    with pytest.raises(ConflictError, match="already exists"):
        store.create_cluster(ClusterSpec(name="c"))
    with pytest.raises(NotFoundError, match="no cluster named 'nope'"):
        store.get_cluster("nope")
    assert [c.name for c in store.list_clusters()] == ["c"]


def test_a_cluster_in_use_cannot_be_removed(store: Store) -> None:
    tid = _group(store)[0]
    store.transition(tid, TaskState.RUNNING)
    with pytest.raises(ConflictError, match="task group"):
        store.delete_cluster("c")
    with pytest.raises(ConflictError, match="running task"):
        store.delete_group("g")
    store.transition(tid, TaskState.CANCELLED, reason="stop")
    store.delete_group("g")  # its tasks and their events go with it
    assert store.list_tasks() == [] and store.events(tid) == []
    store.delete_cluster("c")
    assert store.list_clusters() == []


def test_groups_are_unique_and_start_once(store: Store) -> None:
    ids = _group(store)
    assert len(ids) == 3
    with pytest.raises(ConflictError):
        _group(store, name="g", started=False)
    with pytest.raises(ConflictError, match="already started"):
        store.start_group("g", PARTS, Path("/tmp/logs"))
    assert store.task_spec(ids[1]) == PARTS[1]
    assert store.get_group("g").started_at is not None


def test_transitions_follow_the_table_and_are_recorded(store: Store) -> None:
    tid = _group(store)[0]
    store.transition(tid, TaskState.RUNNING, expect=TaskState.PENDING)
    retry = store.transition(tid, TaskState.RETRYING, reason="boom")
    assert retry.attempt == 2
    store.transition(tid, TaskState.PENDING)
    store.transition(tid, TaskState.RUNNING)
    done = store.transition(tid, TaskState.SUCCEEDED, metrics={"rows": 10}, outputs=["x"])
    assert done.state is TaskState.SUCCEEDED and done.metrics == {"rows": 10}
    assert done.ended_at is not None and done.started_at is not None
    for new in TaskState:
        with pytest.raises(StateError):
            store.transition(tid, new)  # terminal: nothing moves it
    history = [(e["from"], e["to"]) for e in store.events(tid)]
    assert history == [
        ("PENDING", "RUNNING"),
        ("RUNNING", "RETRYING"),
        ("RETRYING", "PENDING"),
        ("PENDING", "RUNNING"),
        ("RUNNING", "SUCCEEDED"),
    ]


def test_illegal_moves_are_refused_and_change_nothing(store: Store) -> None:
    tid = _group(store)[0]
    with pytest.raises(StateError, match="cannot go from PENDING to SUCCEEDED"):
        store.transition(tid, TaskState.SUCCEEDED)
    assert store.get_task(tid).state is TaskState.PENDING
    assert store.events(tid) == []
    with pytest.raises(StateError, match="only a FAILED or CANCELLED"):
        store.transition(tid, TaskState.PENDING, manual_retry=True)


def test_a_user_retry_starts_a_new_attempt(store: Store) -> None:
    tid = _group(store)[0]
    store.transition(tid, TaskState.RUNNING)
    store.transition(tid, TaskState.FAILED, reason="exploded")
    again = store.transition(tid, TaskState.PENDING, manual_retry=True)
    assert again.state is TaskState.PENDING and again.attempt == 2
    assert again.exit_reason is None


def test_only_one_of_two_concurrent_claims_wins(store: Store) -> None:
    tid = _group(store)[0]
    wins: list[int] = []
    errors: list[Exception] = []
    barrier = threading.Barrier(4)

    def claim() -> None:
        barrier.wait()
        try:
            store.transition(tid, TaskState.RUNNING, expect=TaskState.PENDING)
            wins.append(1)
        except StateError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=claim) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1 and len(errors) == 3


def test_cancel_requests(store: Store) -> None:
    a, b, _ = _group(store)
    assert store.request_cancel(a).state is TaskState.CANCELLED  # PENDING: at once
    store.transition(b, TaskState.RUNNING)
    flagged = store.request_cancel(b)
    assert flagged.state is TaskState.RUNNING and flagged.cancel_requested
    assert [t.id for t in store.cancel_requests()] == [b]
    with pytest.raises(StateError):
        store.request_cancel(a)  # already terminal


def test_stale_heartbeats_are_found(store: Store) -> None:
    a, b, _ = _group(store)
    store.transition(a, TaskState.RUNNING)
    store.transition(b, TaskState.RUNNING)
    time.sleep(0.3)
    store.heartbeat([b])
    assert [t.id for t in store.stale_running(0.2)] == [a]
    assert store.stale_running(0.2, exclude=[a]) == []


def test_listing_filters_and_pages(store: Store) -> None:
    ids = _group(store)
    store.transition(ids[0], TaskState.RUNNING)
    store.report_progress(ids[0], 4, 10)
    assert store.get_task(ids[0]).done == 4
    assert [t.id for t in store.list_tasks(group="g", limit=2)] == ids[:2]
    assert [t.id for t in store.list_tasks(group="g", limit=2, offset=2)] == ids[2:]
    assert [t.id for t in store.list_tasks(state="pending")] == ids[1:]
    counts = store.count_tasks("g")
    assert counts[TaskState.PENDING] == 2 and counts[TaskState.RUNNING] == 1
    with pytest.raises(NotFoundError):
        store.list_tasks(group="missing")
