"""Deployments become long-running tasks: each has a task group (job ``serve``, no
cluster when the server hosts it in-process) with one task whose state is the
deployment's state. The deployments' own state columns go; existing deployments get
their group and a PENDING task, so the next server start serves them again.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("task_groups") as batch:
        batch.alter_column("cluster_id", existing_type=sa.Integer(), nullable=True)
    with op.batch_alter_table("deployments") as batch:
        batch.add_column(sa.Column("group_id", sa.Integer(), nullable=True))
        batch.create_foreign_key(
            "fk_deployments_group", "task_groups", ["group_id"], ["id"], ondelete="CASCADE"
        )
    conn = op.get_bind()
    now = datetime.now(UTC)
    groups = sa.table(
        "task_groups",
        *(sa.column(c) for c in ("id", "name", "cluster_id", "source", "job", "script")),
        *(sa.column(c, sa.JSON()) for c in ("config", "env", "resources")),
        *(sa.column(c) for c in ("partitions", "max_retries", "timeout_s", "output")),
        *(sa.column(c, sa.DateTime(timezone=True)) for c in ("created_at", "started_at")),
    )
    tasks = sa.table(
        "tasks",
        *(sa.column(c) for c in ("group_id", "partition", "state", "attempt", "done")),
        *(sa.column(c) for c in ("total", "log_path", "cancel_requested")),
        *(sa.column(c, sa.JSON()) for c in ("spec", "metrics", "outputs")),
        sa.column("created_at", sa.DateTime(timezone=True)),
    )
    deployments = sa.table(
        "deployments",
        *(sa.column(c) for c in ("id", "name", "model", "extractor")),
        *(sa.column(c) for c in ("replicas", "cluster_id", "group_id")),
    )
    taken = set(conn.scalars(sa.select(groups.c.name)))
    for dep in conn.execute(sa.select(deployments)).mappings().all():
        name = dep["name"] if dep["name"] not in taken else f"deploy-{dep['id']}-{dep['name']}"
        group_id = conn.execute(
            groups.insert()
            .values(
                name=name[:63],
                cluster_id=dep["cluster_id"],
                source=dep["model"],
                job="serve",
                script=None,
                config={"extractor": dep["extractor"], "replicas": dep["replicas"]},
                env={},
                partitions=1,
                resources={"cpus": 1.0, "memory_gb": None, "gpus": 0.0},
                max_retries=0,
                timeout_s=None,
                output="",
                created_at=now,
                started_at=now,
            )
            .returning(groups.c.id)
        ).scalar_one()
        conn.execute(
            tasks.insert().values(
                group_id=group_id,
                partition=0,
                spec={},
                state="PENDING",
                attempt=1,
                done=0,
                total=None,
                created_at=now,
                log_path="",
                metrics={},
                outputs=[],
                cancel_requested=False,
            )
        )
        conn.execute(
            deployments.update().where(deployments.c.id == dep["id"]).values(group_id=group_id)
        )
    with op.batch_alter_table("deployments") as batch:
        batch.drop_column("state")
        batch.drop_column("reason")


def downgrade() -> None:
    with op.batch_alter_table("deployments") as batch:
        batch.add_column(
            sa.Column("state", sa.String(16), nullable=False, server_default="pending")
        )
        batch.add_column(sa.Column("reason", sa.Text(), nullable=True))
        batch.drop_constraint("fk_deployments_group", type_="foreignkey")
        batch.drop_column("group_id")
    op.execute("DELETE FROM task_groups WHERE job = 'serve'")
    with op.batch_alter_table("task_groups") as batch:
        batch.alter_column("cluster_id", existing_type=sa.Integer(), nullable=False)
