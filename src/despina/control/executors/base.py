"""The executor interface the scheduler drives; every executor passes one conformance suite."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from despina.control.models import Resources


@dataclass(frozen=True)
class Outcome:
    """How a task's run ended: its result, or a one-line reason it failed."""

    task_id: int
    ok: bool
    reason: str | None = None
    result: dict[str, Any] = field(default_factory=dict)


class Executor(Protocol):
    """Runs tasks by id; state changes stay with the scheduler.

    ``submit`` starts a task (the scheduler has already persisted it as RUNNING);
    ``wait`` returns the tasks that ended since the last call; ``kill`` stops a task
    for good and it is never reported by ``wait``; ``free_slots`` says how many more
    tasks may start now.
    """

    def submit(self, task_id: int, resources: Resources) -> None: ...

    def wait(self, timeout: float) -> list[Outcome]: ...

    def kill(self, task_id: int) -> None: ...

    def active(self) -> list[int]: ...

    def free_slots(self) -> int: ...

    def close(self) -> None: ...
