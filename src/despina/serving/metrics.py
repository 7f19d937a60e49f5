"""Prometheus metrics. Task metrics are read from the store at scrape time, so they survive
restarts and cover tasks run by any scheduler on the same store; serving metrics are kept
in process, per deployment."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
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


LATENCY_BUCKETS = (0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.02, 0.05, 0.1, 0.25, 1, 5)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class ServingMetrics:
    """Request latency and batch size histograms and quality-flag counters, per deployment;
    queue depth and drift scores are read from the deployments at scrape time."""

    def __init__(self, registry: CollectorRegistry, deployments: Callable[[], dict[str, Any]]):
        self.latency = Histogram(
            "despina_request_latency_seconds",
            "Latency of prediction requests",
            ["deployment"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.batch_size = Histogram(
            "despina_batch_size",
            "Rows per model call (micro-batches)",
            ["deployment"],
            buckets=BATCH_BUCKETS,
            registry=registry,
        )
        self.flags = Counter(
            "despina_input_flags",
            "Uploads flagged, by quality flag",
            ["deployment", "flag"],
            registry=registry,
        )
        self.requests = Counter(
            "despina_predictions",
            "Prediction requests by outcome (HTTP status)",
            ["deployment", "status"],
            registry=registry,
        )
        registry.register(_DeploymentCollector(deployments))

    def batch(self, deployment: str, rows: int) -> None:
        self.batch_size.labels(deployment).observe(rows)

    def prediction(self, deployment: str, answer: dict[str, Any]) -> None:
        for flag, value in answer["image"]["flags"].items():
            if value:
                self.flags.labels(deployment, flag).inc()


class _DeploymentCollector(Collector):
    def __init__(self, deployments: Callable[[], dict[str, Any]]) -> None:
        self.deployments = deployments

    def collect(self) -> Iterator[Metric]:
        depth = GaugeMetricFamily(
            "despina_request_queue_depth", "Requests waiting for the model", labels=["deployment"]
        )
        drift = GaugeMetricFamily(
            "despina_drift_psi",
            "Population stability index of inputs against the training set",
            labels=["deployment", "feature"],
        )
        for name, dep in self.deployments().items():
            depth.add_metric([name], dep.queue_depth)
            report = dep.drift.report()
            for feature, value in report["features"].items():
                if value["psi"] is not None:
                    drift.add_metric([name, feature], value["psi"])
            if report["predicted_classes"]["psi"] is not None:
                drift.add_metric([name, "predicted_class"], report["predicted_classes"]["psi"])
        yield depth
        yield drift
