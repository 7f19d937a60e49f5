"""One store contract, run against SQLite and a real PostgreSQL server."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.exc import DBAPIError

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
    recent = store.recent_events(3)  # the console's overview: newest first, any group
    assert [(e["task"], e["group"], e["to"]) for e in recent] == [
        (tid, "g", "SUCCEEDED"),
        (tid, "g", "RUNNING"),
        (tid, "g", "PENDING"),
    ]
    assert recent[2]["attempt"] == 2 and recent[0]["at"].tzinfo is not None


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


def _staged(store: Store) -> list[Any]:
    """A started audit group of two scan tasks (stage 0) and one audit task (stage 1)."""
    store.create_cluster(ClusterSpec(name="c"))
    store.create_group(GroupSpec(name="s", cluster="c", source="builtin:digits", job="audit",
                                 partitions=2), output="/tmp/out/s")  # fmt: skip
    parts = [{**PARTS[0], "stage": 0}, {**PARTS[1], "stage": 0}, {"stage": 1, "step": "audit"}]
    return store.start_group("s", parts, Path("/tmp/logs"))


def test_a_stage_starts_when_every_earlier_task_succeeded(store: Store) -> None:
    a, b, last = _staged(store)
    assert (a.stage, b.stage, last.stage) == (0, 0, 1)
    assert [t.id for t in store.claimable(None, 10)] == [a.id, b.id]
    store.transition(a.id, TaskState.RUNNING)
    store.transition(a.id, TaskState.SUCCEEDED)
    assert [t.id for t in store.claimable(None, 10)] == [b.id]
    store.transition(b.id, TaskState.RUNNING)
    store.transition(b.id, TaskState.SUCCEEDED)
    assert [t.id for t in store.claimable(None, 10)] == [last.id]


def test_a_failed_stage_cancels_the_tasks_waiting_on_it(store: Store) -> None:
    a, b, last = _staged(store)
    store.transition(a.id, TaskState.RUNNING)
    store.transition(a.id, TaskState.FAILED, reason="exploded")
    after = store.get_task(last.id)
    assert after.state is TaskState.CANCELLED
    assert f"task {a.id} of stage 0" in (after.exit_reason or "") and "retry it" in (
        after.exit_reason or ""
    )
    assert store.get_task(b.id).state is TaskState.PENDING  # its own stage goes on
    assert [t.id for t in store.claimable(None, 10)] == [b.id]


def test_a_cancelled_task_cancels_every_later_stage_once(store: Store) -> None:
    store.create_cluster(ClusterSpec(name="c"))
    store.create_group(GroupSpec(name="s", cluster="c", source="builtin:digits", job="audit",
                                 partitions=2), output="/tmp/out/s")  # fmt: skip
    # Scans, two stages of two folds, the audit: a task of stage 1 waits on both of stage 0.
    stages = [0, 0, 1, 1, 2, 2, 3]
    tasks = store.start_group("s", [{"stage": k} for k in stages], Path("/tmp/logs"))
    store.request_cancel(tasks[0].id)
    after = [store.get_task(t.id) for t in tasks]
    assert [t.state for t in after] == [TaskState.CANCELLED, TaskState.PENDING,
                                        *[TaskState.CANCELLED] * 5]  # fmt: skip
    assert all(f"task {tasks[0].id} of stage 0" in (t.exit_reason or "") for t in after[2:])


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


# ---- users, tokens and the activity log (the security half of the store) -------------
def test_users_and_tokens_keep_only_hashes(store: Store) -> None:
    from despina.security.roles import Role
    from despina.security.tokens import Scope, hash_token

    assert store.bootstrap_admin() is not None
    assert store.bootstrap_admin() is None  # only on an empty store
    store.create_user("ana", Role.VIEWER)
    with pytest.raises(ConflictError, match="already exists"):
        store.create_user("ana", Role.ADMIN)
    token, info = store.issue_token(
        "ana", scopes=(Scope("group", "g"),), expires_in=timedelta(days=1)
    )
    assert info.role == "viewer" and info.scopes == ("group:g",) and info.expires_at
    found = store.token_by_hash(hash_token(token))
    assert found is not None and found.id == info.id
    assert store.token_by_hash(hash_token(token + "x")) is None
    with store.engine.connect() as conn:  # the token itself is nowhere in the database
        dumped = " ".join(str(r) for r in conn.exec_driver_sql("SELECT * FROM tokens"))
    assert token not in dumped and hash_token(token) in dumped
    assert store.revoke_token(info.id).revoked_at is not None
    with pytest.raises(NotFoundError):
        store.revoke_token("tok_nope")
    with pytest.raises(ConflictError, match="last admin"):
        store.delete_user("admin")
    store.delete_user("ana")
    assert store.token_by_hash(hash_token(token)) is None
    assert [u.name for u in store.list_users()] == ["admin"]


def test_the_activity_log_chains_entries_and_notices_edits_and_deletions(store: Store) -> None:
    def verify() -> Any:
        return store.verify_activity()

    for i in range(8):
        store.record_activity("ana", "POST /v1/groups", f"/v1/groups/g{i}", "201")
    assert verify().ok and verify().entries == 8
    assert [e.seq for e in store.list_activity(limit=3)] == [8, 7, 6]
    for sql in ("UPDATE activity SET actor = 'eve' WHERE seq = 4", "DELETE FROM activity"):
        with pytest.raises(DBAPIError, match="append-only"), store.engine.begin() as conn:
            conn.exec_driver_sql(sql)
    _drop_append_only_triggers(store)  # what an intruder with the database would do
    with store.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE activity SET actor = 'eve' WHERE seq = 4")
    report = verify()
    assert not report.ok and report.broken_at == 4 and "edited" in (report.reason or "")
    with store.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE activity SET actor = 'ana' WHERE seq = 4")
        conn.exec_driver_sql("DELETE FROM activity WHERE seq = 6")
    report = verify()
    assert not report.ok and report.broken_at == 6 and "missing" in (report.reason or "")


def test_a_chain_rewritten_without_the_key_or_cut_back_is_detected(store: Store) -> None:
    """Whoever can write the database can recompute an unkeyed chain; not a keyed one.
    Deleting the newest entries leaves a valid shorter chain: an earlier head tells."""
    import hashlib
    import json

    from despina.security.chain import FIELDS, GENESIS

    for i in range(5):
        store.record_activity("ana", "POST /v1/groups", f"/v1/groups/g{i}", "201")
    head = store.verify_activity().head
    assert store.verify_activity(expect=head).expected_at == 5
    _drop_append_only_triggers(store)
    with store.engine.begin() as conn:  # an intruder rewrites entry 2 and re-chains all
        conn.exec_driver_sql("UPDATE activity SET actor = 'eve' WHERE seq = 2")
        rows = conn.exec_driver_sql(
            "SELECT seq, at, actor, action, target, outcome FROM activity ORDER BY seq"
        ).fetchall()
        prev = GENESIS
        for row in rows:
            body = json.dumps(dict(zip(FIELDS, row, strict=True)), sort_keys=True,
                              separators=(",", ":"))  # fmt: skip
            digest = hashlib.sha256(prev.encode() + b"\n" + body.encode()).hexdigest()
            conn.exec_driver_sql(
                "UPDATE activity SET prev_hash = %s, hash = %s WHERE seq = %s"
                if store.engine.dialect.name == "postgresql"
                else "UPDATE activity SET prev_hash = ?, hash = ? WHERE seq = ?",
                (prev, digest, row[0]),
            )
            prev = digest
    report = store.verify_activity()
    assert not report.ok and report.broken_at == 1 and "forged" in (report.reason or "")
    with store.engine.begin() as conn:  # start over: a clean chain, then cut back
        conn.exec_driver_sql("DELETE FROM activity")
    for i in range(5):
        store.record_activity("ana", "POST /v1/groups", f"/v1/groups/g{i}", "201")
    head = store.verify_activity().head
    with store.engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM activity WHERE seq >= 4")
    assert store.verify_activity().ok  # a shorter chain is still a valid chain...
    cut = store.verify_activity(expect=head)
    assert not cut.ok and "not in the log" in (cut.reason or "")  # ...but not the one seen


def _drop_append_only_triggers(store: Store) -> None:
    with store.engine.begin() as conn:
        if store.engine.dialect.name == "postgresql":
            conn.exec_driver_sql("DROP TRIGGER activity_append_only ON activity")
        else:
            conn.exec_driver_sql("DROP TRIGGER activity_no_update")
            conn.exec_driver_sql("DROP TRIGGER activity_no_delete")


def test_concurrent_writers_never_fork_the_activity_chain(store: Store) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: store.record_activity("w", "POST /x", str(i), "200"), range(60)))
    report = store.verify_activity()
    assert report.ok and report.entries == 60


# ---- deployments: a task group (job "serve") with one task each ------------------------
def test_a_deployment_is_a_serve_group_with_one_task(store: Store) -> None:
    from despina.control.models import DeploymentSpec

    dep = store.create_deployment(DeploymentSpec(name="d", model="/m"), Path("/tmp/logs"))
    assert dep.state == "pending" and dep.task_id is not None and dep.attempt == 1
    group = store.get_group("d")
    assert (group.job, group.cluster, group.source) == ("serve", None, "/m")
    assert [g.name for g in store.list_groups()] == ["d"]  # no cluster: still listed
    [task] = store.list_tasks(group="d")
    assert task.id == dep.task_id and task.log_path.endswith("d/deployment.log")
    store.transition(task.id, TaskState.RUNNING)
    assert store.get_deployment("d").state == "running"
    store.transition(task.id, TaskState.FAILED, reason="model folder broke")
    failed = store.get_deployment("d")
    assert (failed.state, failed.reason) == ("failed", "model folder broke")
    with pytest.raises(ConflictError, match="already exists"):
        store.create_deployment(DeploymentSpec(name="d", model="/m"), Path("/tmp/logs"))
    with pytest.raises(ConflictError, match="deployments rm d"):
        store.delete_group("d")
    _group(store, "g", started=False)
    with pytest.raises(ConflictError, match="task group named 'g'"):
        store.create_deployment(DeploymentSpec(name="g", model="/m"), Path("/tmp/logs"))
    store.delete_deployment("d")
    with pytest.raises(NotFoundError):
        store.get_group("d")
    with pytest.raises(NotFoundError):
        store.get_task(task.id)
    assert store.list_deployments() == []


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_upgrading_a_store_keeps_tasks_and_gives_deployments_their_task(
    backend: str, tmp_path: Path
) -> None:
    """A store at revision 0003 (deployments with their own state) upgrades in place:
    tasks and events survive the table rebuilds, each deployment gets a PENDING task."""
    from importlib import resources

    from alembic import command
    from alembic.config import Config
    from sqlalchemy import text

    from despina.control.store.engine import open_engine
    from tests.control.fixtures import postgres_url

    gen = postgres_url() if backend == "postgres" else None
    url = next(gen) if gen is not None else f"sqlite:///{tmp_path / 'old.db'}"
    engine = open_engine(url)
    cfg = Config()
    cfg.set_main_option(
        "script_location", str(resources.files("despina.control.store") / "migrations")
    )
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0003")
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO clusters (name, backend, workers, resources, created_at) VALUES "
                "('c', 'local', 2, '{}', CURRENT_TIMESTAMP)"
            )
        )
        conn.execute(
            text(
                "INSERT INTO task_groups (name, cluster_id, source, job, config, env, "
                "partitions, resources, max_retries, output, created_at) VALUES ('d', "
                "(SELECT id FROM clusters), 's', "
                "'preprocess', '{}', '{}', 1, '{\"cpus\": 1.0}', 0, 'o', CURRENT_TIMESTAMP)"
            )
        )
        conn.execute(
            text(
                "INSERT INTO tasks (group_id, partition, spec, state, attempt, done, "
                "created_at, log_path, metrics, outputs, cancel_requested) VALUES "
                "((SELECT id FROM task_groups), 0, '{}', "
                "'SUCCEEDED', 1, 5, CURRENT_TIMESTAMP, 'l', '{}', '[]', false)"
            )
        )
        conn.execute(
            text(
                "INSERT INTO task_events (task_id, at, attempt, from_state, to_state) VALUES "
                "((SELECT id FROM tasks), CURRENT_TIMESTAMP, 1, 'RUNNING', 'SUCCEEDED')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO deployments (name, model, extractor, replicas, state, created_at) "
                "VALUES ('d', '/m', 'contours', 1, 'running', CURRENT_TIMESTAMP)"
            )
        )
    engine.dispose()
    upgraded = Store(url)
    try:
        [old] = upgraded.list_tasks(group="d")
        assert old.done == 5 and len(upgraded.events(old.id)) == 1
        dep = upgraded.get_deployment("d")
        assert (dep.state, dep.extractor) == ("pending", "contours")
        group = upgraded.list_tasks(state="pending")[0].group
        assert group.startswith("deploy-") and upgraded.get_group(group).job == "serve"
        with upgraded.engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        assert diff == []
    finally:
        upgraded.close()
        if gen is not None:
            next(gen, None)


def test_reviews_stand_until_undone_and_a_page_reads_only_its_samples(store: Store) -> None:
    _group(store)
    store.add_review("g", "a.png", "drop", None, "olga")
    store.add_review("g", "a.png", "relabel", "7", "otto")  # the later one stands
    assert store.add_reviews("g", ["b.png", "c.png"], "keep", None, "olga") == 2
    page = store.standing_reviews("g", ["a.png", "b.png", "nope.png"])
    assert {k: (r.action, r.label, r.user) for k, r in page.items()} == {
        "a.png": ("relabel", "7", "otto"),
        "b.png": ("keep", None, "olga"),
    }
    undone = store.undo_review("g", "a.png")
    assert undone is not None and undone.action == "relabel"
    assert store.standing_reviews("g", ["a.png"])["a.png"].action == "drop"
    store.undo_review("g", "a.png")
    assert store.standing_reviews("g", ["a.png"]) == {} and store.undo_review("g", "a.png") is None
    assert [r.sample for r in store.list_reviews("g")] == ["b.png", "c.png"]
    assert len(store.list_reviews("g", history=True)) == 4
