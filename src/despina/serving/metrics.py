"""Prometheus metrics read from the store at scrape time, so they survive restarts and
cover tasks run by any scheduler on the same store."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from despina.control.states import TaskState
from despina.control.store import Store

DURATION_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)


class StoreCollector(Collector):
    """tasks by state, queue depth, items processed and the task duration histogram."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def collect(self) -> Iterator[Metric]:
        counts = self.store.count_tasks()
        by_state = GaugeMetricFamily("despina_tasks", "Tasks by state", labels=["state"])
        for state, n in counts.items():
            by_state.add_metric([state.value], n)
        yield by_state
        yield GaugeMetricFamily(
            "despina_queue_depth",
            "Tasks waiting to run (PENDING or RETRYING)",
            value=counts[TaskState.PENDING] + counts[TaskState.RETRYING],
        )
        tasks = self.store.list_tasks()
        yield CounterMetricFamily(
            "despina_items_processed",
            "Items processed by tasks (done counts of every task)",
            value=sum(t.done for t in tasks),
        )
        durations = [d for t in tasks if t.state.terminal and (d := t.duration_s) is not None]
        buckets = [(str(b), sum(d <= b for d in durations)) for b in DURATION_BUCKETS] + [
            ("+Inf", len(durations))
        ]
        hist = HistogramMetricFamily(
            "despina_task_duration_seconds", "Duration of finished task attempts"
        )
        hist.add_metric([], buckets, sum_value=sum(durations))
        yield hist
