"""The console's drawings: the group page's timeline (each task a bar on one time axis,
from its start, as long as it ran, grouped by the node it ran on), and the deployment
page's charts over time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from despina.control.models import Task
from despina.control.states import TaskState
from despina.serving.console import timeline
from despina.serving.console_deployments import charts


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


def test_the_latency_chart_is_each_intervals_p95_not_the_running_one() -> None:
    """A hundred fast requests, then ten slow ones: the second point is the slow
    interval's p95 (about 475 ms), not the p95 since the start (about 228 ms)."""
    from collections import deque

    def moment(t: float, fast: int, slow: int) -> tuple[float, dict[str, Any]]:
        buckets = [(0.005, fast), (0.5, fast + slow), (float("inf"), fast + slow)]
        return t, {"rate": fast + slow, "latency": buckets, "flags": 0, "drift": None}

    drawn = {c["id"]: c for c in charts(deque([moment(0, 0, 0), moment(1, 100, 0),
                                               moment(2, 100, 10)]))}  # fmt: skip
    latency, rate = drawn["latency"], drawn["rate"]
    assert 250 < latency["now"] <= 500 and latency["top"] == latency["now"]
    assert len(latency["points"].split()) == 2 and rate["now"] == 10
    # An interval without requests has no latency: no point, not a zero.
    quiet = charts(deque([moment(0, 0, 0), moment(1, 0, 0)]))
    assert quiet[1]["now"] is None and quiet[1]["points"] == "" and quiet[0]["now"] == 0
