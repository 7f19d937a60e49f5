"""The console's deployment page: requests, latency percentiles, batch sizes, input flags
and drift of one deployment, from the server's own metrics, with charts of its request
rate, latency, input flags and drift over the last minute that move as requests arrive
(server-sent events, drawn as SVG on the server)."""

from __future__ import annotations

import itertools
import time
from collections import deque
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, StreamingResponse
from prometheus_client import CollectorRegistry

from despina.core.errors import NotFoundError
from despina.serving.console_pages import fragment, page, sse_stream
from despina.serving.host import DeploymentHost

#: How often a deployment's page is refreshed, and how much history its chart shows.
EVERY_S = 1.0
HISTORY = 60


Samples = dict[str, list[tuple[dict[str, str], float]]]


def _samples(registry: CollectorRegistry, name: str) -> Samples:
    """Every sample of the registry's metrics that belongs to deployment ``name``."""
    found: Samples = {}
    for metric in registry.collect():
        for s in metric.samples:
            if s.labels.get("deployment") == name:
                found.setdefault(s.name, []).append((s.labels, s.value))
    return found


def _quantile(buckets: list[tuple[float, float]], q: float) -> float | None:
    """A quantile of a cumulative histogram (upper bound, count), by linear interpolation
    inside its bucket, as Prometheus's ``histogram_quantile``."""
    if not buckets or buckets[-1][1] == 0:
        return None
    rank, low, below = q * buckets[-1][1], 0.0, 0.0
    for upper, count in buckets:
        if count >= rank:
            if upper == float("inf"):
                return low
            return low + (upper - low) * (rank - below) / max(count - below, 1e-12)
        low, below = upper, count
    return low


def stats(registry: CollectorRegistry, name: str) -> dict[str, Any]:
    """What a deployment's page shows, from the metrics at this moment."""
    samples = _samples(registry, name)
    by_status = {lab["status"]: v for lab, v in samples.get("despina_predictions_total", [])}
    flags = {lab["flag"]: v for lab, v in samples.get("despina_input_flags_total", []) if v}
    buckets = sorted((float(lab["le"]), v) for lab, v in
                     samples.get("despina_request_latency_seconds_bucket", []))  # fmt: skip
    batch_sum = sum(v for _, v in samples.get("despina_batch_size_sum", []))
    batch_n = sum(v for _, v in samples.get("despina_batch_size_count", []))
    depth = [v for _, v in samples.get("despina_request_queue_depth", [])]
    drift = {lab["feature"]: v for lab, v in samples.get("despina_drift_psi", [])}
    p50, p95 = _quantile(buckets, 0.5), _quantile(buckets, 0.95)
    return {
        "requests": int(sum(by_status.values())), "by_status": by_status, "flags": flags,
        "p50_ms": None if p50 is None else p50 * 1000,
        "p95_ms": None if p95 is None else p95 * 1000,
        "mean_batch": batch_sum / batch_n if batch_n else None,
        "queue": depth[0] if depth else 0, "drift": drift, "buckets": buckets,
    }  # fmt: skip


#: The charts of a deployment's page: id, title, and how each is drawn from the history:
#: a counter's increase per second, the latency histogram's p95 over each interval, or
#: the value as it was.
CHARTS = (
    ("rate", "requests/s", "rate"),
    ("latency", "latency p95, ms", "p95"),
    ("flags", "input flags/s", "rate"),
    ("drift", "largest drift (PSI)", "value"),
)

Moment = tuple[float, dict[str, Any]]


def _series(history: list[Moment], key: str, how: str) -> list[float | None]:
    pairs = list(itertools.pairwise(history))
    if how == "rate":
        return [(b[key] - a[key]) / max(tb - ta, 1e-6) for (ta, a), (tb, b) in pairs]
    if how == "p95":  # the requests of each interval alone: the cumulative buckets' increase
        out: list[float | None] = []
        for (_, a), (_, b) in pairs:
            before = dict(a[key])
            q = _quantile([(le, n - before.get(le, 0.0)) for le, n in b[key]], 0.95)
            out.append(None if q is None else q * 1000)
        return out
    return [v[key] for _, v in history[1:]]


def charts(history: deque[Moment]) -> list[dict[str, Any]]:
    """Each chart's points over the history, as an SVG polyline's (300 x 80)."""
    out = []
    step = 300 / max(HISTORY - 1, 1)
    for key, title, how in CHARTS:
        series = _series(list(history), key, how)
        start = HISTORY - 1 - len(series)
        top = max((v for v in series if v is not None), default=0.0) or 1.0
        xy = [((start + i) * step, 80 - 76 * v / top) for i, v in enumerate(series)
              if v is not None]  # fmt: skip
        out.append({
            "id": key, "title": title, "points": " ".join(f"{x:.1f},{y:.1f}" for x, y in xy),
            "top": top, "now": series[-1] if series else None,
            "last": xy[-1] if xy else None,  # drawn as a dot: one point makes no line
        })  # fmt: skip
    return out


def _moment(s: dict[str, Any]) -> dict[str, Any]:
    """What the charts follow, from one moment's statistics."""
    return {"rate": s["requests"], "latency": s["buckets"], "flags": sum(s["flags"].values()),
            "drift": max(s["drift"].values(), default=None)}  # fmt: skip


def deployments_router(host: DeploymentHost, registry: CollectorRegistry) -> APIRouter:
    """The pages of the deployments ``host`` knows: the control plane's records and what
    this server loaded (``despina serve``'s one model has no record)."""
    router = APIRouter(include_in_schema=False)

    def find(name: str) -> dict[str, Any]:
        found = next((d for d in host.listing() if d["name"] == name), None)
        if found is None:
            raise NotFoundError(f"no deployment {name!r} (see 'despina deployment list')")
        return found

    @router.get("/ui/deployments/{name}")
    def deployment_page(request: Request, name: str) -> HTMLResponse:
        deployment = find(name)
        now = stats(registry, name)
        start = deque([(time.monotonic(), _moment(now))])
        return page("console/deployment.html", request, deployment=deployment, s=now,
                    charts=charts(start))  # fmt: skip

    @router.get("/ui/deployments/{name}/stream")
    async def deployment_stream(request: Request, name: str) -> StreamingResponse:
        find(name)  # 404 before the stream starts
        history: deque[Moment] = deque(maxlen=HISTORY)

        async def render() -> str:  # sent every time: the charts move on
            now = stats(registry, name)
            history.append((time.monotonic(), _moment(now)))
            return fragment("console/deployment_stats.html", s=now, charts=charts(history))

        return sse_stream(request, "stats", render, EVERY_S)

    return router


def served_router(host: DeploymentHost) -> APIRouter:
    """``despina serve``'s console home: the page of the model it serves."""
    router = APIRouter(include_in_schema=False)

    @router.get("/ui/")
    def home() -> RedirectResponse:
        names = sorted(host.snapshot())
        return RedirectResponse(f"/ui/deployments/{names[0]}" if names else "/ui/login", 303)

    return router
