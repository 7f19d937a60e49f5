"""Task and group states, and the one transition function that refuses illegal moves.

::

    PENDING ──► RUNNING ──► SUCCEEDED
       │           │ ├────► FAILED ◄──┐
       │           │ └────► RETRYING ─┴─► PENDING (next attempt)
       └───────────┴──────► CANCELLED

Terminal states (SUCCEEDED, FAILED, CANCELLED) never change, except that a user may
``retry`` a FAILED or CANCELLED task, which starts a new attempt from PENDING.
"""

from __future__ import annotations

from enum import StrEnum

from despina.core.errors import StateError


class TaskState(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    RETRYING = "RETRYING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELLED})

TRANSITIONS: dict[TaskState, frozenset[TaskState]] = {
    TaskState.PENDING: frozenset({TaskState.RUNNING, TaskState.CANCELLED}),
    TaskState.RUNNING: frozenset(
        {TaskState.SUCCEEDED, TaskState.FAILED, TaskState.RETRYING, TaskState.CANCELLED}
    ),
    TaskState.RETRYING: frozenset({TaskState.PENDING, TaskState.FAILED, TaskState.CANCELLED}),
    TaskState.SUCCEEDED: frozenset(),
    TaskState.FAILED: frozenset(),
    TaskState.CANCELLED: frozenset(),
}


def check_transition(current: TaskState, new: TaskState, *, manual_retry: bool = False) -> None:
    """Raise :class:`StateError` unless ``current → new`` is allowed.

    ``manual_retry`` allows the one move out of a terminal state: a user's retry of a
    FAILED or CANCELLED task back to PENDING.
    """
    if manual_retry:
        if current in (TaskState.FAILED, TaskState.CANCELLED) and new is TaskState.PENDING:
            return
        raise StateError(
            f"only a FAILED or CANCELLED task can be retried; this one is {current.value}"
        )
    if new not in TRANSITIONS[current]:
        allowed = ", ".join(sorted(s.value for s in TRANSITIONS[current])) or "none (terminal)"
        raise StateError(
            f"a task cannot go from {current.value} to {new.value}; allowed from "
            f"{current.value}: {allowed}"
        )


def group_state(counts: dict[TaskState, int]) -> str:
    """A group's state from its tasks' states: the least advanced one wins."""
    total = sum(counts.values())
    if total == 0:
        return "CREATED"
    if counts.get(TaskState.RUNNING, 0) or counts.get(TaskState.RETRYING, 0):
        return "RUNNING"
    if counts.get(TaskState.PENDING, 0):
        done = total - counts[TaskState.PENDING]
        return "RUNNING" if done else "PENDING"
    if counts.get(TaskState.FAILED, 0):
        return "FAILED"
    if counts.get(TaskState.CANCELLED, 0):
        return "CANCELLED"
    return "SUCCEEDED"
