"""What the control plane stores, as frozen snapshots: clusters, task groups and tasks.

``*Spec`` objects are what a user asks for (validated with clear messages); the others
are read back from the store and never change in place: a new state is a new snapshot.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from despina.control.states import TaskState
from despina.core.config import FrozenModel
from despina.data.corrections import ReviewAction
from despina.security.roles import Role

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
BUILTIN_JOBS = ("preprocess", "audit", "train", "predict", "optimize")
#: The job of a deployment's task group: a server hosts it (despina.serving.host), no
#: executor runs it.
SERVE_JOB = "serve"


def _check_name(value: str) -> str:
    if not NAME_PATTERN.match(value):
        raise ValueError(
            "names are 1-63 lowercase letters, digits, '.', '_' or '-', starting with a "
            f"letter or digit; got {value!r}"
        )
    return value


class Resources(FrozenModel):
    """What one task (or a whole cluster) may use."""

    cpus: float = Field(1.0, gt=0, le=1024, description="CPU cores")
    memory_gb: float | None = Field(None, gt=0, le=65536, description="memory in GiB")
    gpus: float = Field(0.0, ge=0, le=64)


class ClusterSpec(FrozenModel):
    """Where work runs: a pool of local worker processes, or a Ray cluster."""

    name: str
    backend: Literal["local", "ray"] = "local"
    address: str | None = Field(
        None, description="Ray only: the head's address, or 'auto' to start a local Ray head"
    )
    workers: int = Field(2, ge=1, le=1024, description="tasks that run at the same time")
    resources: Resources = Resources(cpus=2.0)

    _name = field_validator("name")(_check_name)

    @model_validator(mode="after")
    def _address_for_ray(self) -> ClusterSpec:
        if self.backend == "local" and self.address:
            raise ValueError("--address is for ray clusters; a local cluster has none")
        return self


class Cluster(ClusterSpec):
    id: int
    created_at: datetime


class GroupSpec(FrozenModel):
    """What to run: a built-in job or a user script, over a data source, in partitions."""

    name: str
    cluster: str
    source: str = Field(description="a local folder or file, fashion-mnist:DIR, or an fsspec URI")
    job: Literal["preprocess", "audit", "train", "predict", "optimize"] | None = None
    script: str | None = Field(None, description="a Python file defining process() or main()")
    config: dict[str, Any] = Field(default_factory=dict, description="the job's configuration")
    env: dict[str, str] = Field(default_factory=dict)
    partitions: int = Field(1, ge=1, le=100_000)
    resources: Resources = Resources()
    max_retries: int = Field(2, ge=0, le=100)
    timeout_s: float | None = Field(None, gt=0, description="kill and fail a task after this")

    _name = field_validator("name")(_check_name)

    @model_validator(mode="after")
    def _job_or_script(self) -> GroupSpec:
        if (self.job is None) == (self.script is None):
            raise ValueError(
                "give exactly one of --job (preprocess|audit|train|predict|optimize) or "
                "--script FILE"
            )
        bad = [k for k in self.env if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", k)]
        if bad:
            raise ValueError(f"environment variable names must be identifiers: {bad}")
        return self


class TaskGroup(GroupSpec):
    # As stored: a deployment's group has job "serve" and, when the server hosts it in
    # its own process, no cluster.
    cluster: str | None  # type: ignore[assignment]
    job: str | None = None  # type: ignore[assignment]
    id: int
    output: str
    created_at: datetime
    started_at: datetime | None = None


class Task(FrozenModel):
    """One attempt-tracked run of one partition of a group."""

    id: int
    group: str
    partition: int
    state: TaskState
    #: Starts once every task of the group's earlier stages has succeeded.
    stage: int = 0
    attempt: int
    done: int = 0
    total: int | None = None
    created_at: datetime
    started_at: datetime | None = None
    ended_at: datetime | None = None
    heartbeat_at: datetime | None = None
    not_before: datetime | None = None
    exit_reason: str | None = None
    log_path: str
    metrics: dict[str, Any] = Field(default_factory=dict)
    outputs: list[str] = Field(default_factory=list)
    cancel_requested: bool = False

    @property
    def duration_s(self) -> float | None:
        if self.started_at is None:
            return None
        end = self.ended_at or datetime.now(self.started_at.tzinfo)
        return (end - self.started_at).total_seconds()


class GroupStatus(FrozenModel):
    """``despina group status --json``: the group's state, task counts and output."""

    name: str
    cluster: str | None
    state: str
    counts: dict[str, int]
    output: str
    done: int
    total: int | None
    items_per_second: float | None
    eta_s: float | None
    started_at: datetime | None


class DeploymentSpec(FrozenModel):
    """A model folder served by the control-plane server (``despina deploy``)."""

    name: str
    model: str = Field(description="a model folder written by audit or train (…/model)")
    extractor: str = Field("whole", description="whole, contours, cascade:NAME or learned")
    replicas: int = Field(1, ge=1, le=64, description="Ray Serve replicas (ray clusters)")
    cluster: str | None = Field(None, description="where it runs; default: in the server")

    _name = field_validator("name")(_check_name)


class Deployment(DeploymentSpec):
    """A registered deployment; its state is that of its task (``task_id``): pending until
    a server loads it (or between servers), running, failed to load, or stopped by a user
    (``despina task cancel``; ``despina task retry`` serves it again)."""

    id: int
    state: Literal["pending", "running", "failed", "stopped"]
    reason: str | None = None
    task_id: int | None = None
    attempt: int = 1
    created_at: datetime
    version: str | None = Field(None, description="the served model's version, once loaded")


class UserSpec(FrozenModel):
    """A user to add: a name (the same rule as every other name) and a role."""

    name: str
    role: Role

    _name = field_validator("name")(_check_name)


class User(FrozenModel):
    """A user of the API; what they may do comes from their role."""

    name: str
    role: str
    has_password: bool
    created_at: datetime


class TokenInfo(FrozenModel):
    """A token's public record; the token itself is shown once and never stored."""

    id: str
    user: str
    role: str
    scopes: tuple[str, ...]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None


class ActivityEntry(FrozenModel):
    """One mutating request (or administrative action): who, what, when, outcome."""

    seq: int
    at: str
    actor: str
    action: str
    target: str
    outcome: str
    prev_hash: str
    hash: str


class Review(FrozenModel):
    """A person's verdict on one sample of an audit group (see ``ReviewStore``)."""

    id: int
    group: str
    sample: str
    action: ReviewAction
    label: str | None = Field(None, description="the new label of a relabel")
    user: str
    at: datetime
    undone_at: datetime | None = None
