"""The group page's timeline: each task a bar on one time axis, from its start, as long
as it ran, grouped by the node it ran on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from despina.control.models import Task
from despina.control.states import TaskState
from despina.serving.console import timeline


def _task(i: int, start_s: float, took_s: float, node: str = "") -> Task:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    return Task(id=i, group="g", partition=i, state=TaskState.SUCCEEDED, attempt=1,
                created_at=t0, started_at=t0 + timedelta(seconds=start_s),
                ended_at=t0 + timedelta(seconds=start_s + took_s), log_path="x",
                metrics={"node": node} if node else {})  # fmt: skip


def test_bars_start_when_their_task_did_and_the_axis_ends_at_the_last_end() -> None:
    got = timeline([_task(1, 0, 2), _task(2, 6, 4, node="n2"), _task(3, 1, 1)])
    assert got["span_s"] == 10
    bars = {b["title"].split(",")[0]: b for b in got["bars"]}
    assert (bars["task 1"]["x"], bars["task 1"]["w"]) == (0, 20)
    assert (bars["task 2"]["x"], bars["task 2"]["w"]) == (60, 40)
    assert (bars["task 3"]["x"], bars["task 3"]["w"]) == (10, 10)
    # Grouped by node, the node named on its first row only.
    assert [b["node"] for b in got["bars"]] == ["this machine", "", "n2"]


def test_no_task_started_draws_nothing() -> None:
    pending = _task(1, 0, 1).model_copy(update={"started_at": None, "ended_at": None})
    assert timeline([pending]) == {"bars": [], "span_s": 0.0}
