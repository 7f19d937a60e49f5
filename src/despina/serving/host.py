"""The deployments a server hosts, kept in step with the store's registrations.

A deployment registered while the server runs (``despina deploy`` on the embedded store)
is loaded by the next :meth:`DeploymentHost.sync`; one removed is closed. A folder that
fails to load is recorded as ``failed`` with the reason, and the server goes on.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from despina.control.models import Deployment as DeploymentRecord
from despina.control.plane import ControlPlane
from despina.core.errors import NotFoundError
from despina.serving.deployment import Deployment, ServingSettings

logger = logging.getLogger(__name__)


class DeploymentHost:
    """Loaded deployments by name, from a control plane's store or given directly."""

    def __init__(
        self, settings: ServingSettings, plane: ControlPlane | None = None, observer: Any = None
    ) -> None:
        self.settings = settings
        self.plane = plane
        self.observer = observer
        self.loaded: dict[str, Any] = {}  # Deployment, or RayServed on a Ray cluster
        self.failed: dict[str, str] = {}
        self._fixed: set[str] = set()
        self._lock = threading.Lock()

    def set_observer(self, observer: Any) -> None:
        """Report to ``observer`` (ServingMetrics) from now on, loaded deployments too."""
        with self._lock:
            self.observer = observer
            for dep in self.loaded.values():
                dep.observer = observer

    def add(self, name: str, model: str, extractor: str = "whole") -> Deployment:
        """Load a deployment that lives only in this server (``despina serve``)."""
        dep = Deployment(name, model, extractor, self.settings, self.observer)
        with self._lock:
            self.loaded[name] = dep
            self._fixed.add(name)
        return dep

    def sync(self) -> None:
        """Load what the store has registered and close what it no longer has."""
        if self.plane is None:
            return
        records = {d.name: d for d in self.plane.list_deployments()}
        for name in list(self.loaded):
            if name not in records and name not in self._fixed:
                with self._lock:
                    dep = self.loaded.pop(name)
                dep.close()
        for name in [n for n in self.failed if n not in records]:
            self.failed.pop(name)
        for name, rec in records.items():
            if name not in self.loaded and name not in self.failed:
                self._load(rec)

    def _load(self, rec: DeploymentRecord) -> None:
        assert self.plane is not None
        try:
            cluster = None if rec.cluster is None else self.plane.get_cluster(rec.cluster)
            if cluster is not None and cluster.backend == "ray":
                from despina.serving.ray_serve import RayServed

                dep: Any = RayServed(rec, cluster, self.settings, self.observer)
            else:
                dep = Deployment(rec.name, rec.model, rec.extractor, self.settings, self.observer)
        except Exception as exc:  # a folder that broke since deploy time, or Ray failing
            logger.warning("deployment %s failed to load: %s", rec.name, exc)
            self.failed[rec.name] = str(exc)
            self.plane.store.set_deployment_state(rec.name, "failed", str(exc))
            return
        with self._lock:
            self.loaded[rec.name] = dep
        self.plane.store.set_deployment_state(rec.name, "running")

    def get(self, name: str) -> Any:
        dep = self.loaded.get(name)
        if dep is None:
            self.sync()
            dep = self.loaded.get(name)
        if dep is None:
            if name in self.failed:
                raise NotFoundError(f"deployment {name!r} failed to load: {self.failed[name]}")
            raise NotFoundError(f"no deployment named {name!r}; see GET /v1/deployments")
        return dep

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return dict(self.loaded)

    def listing(self) -> list[dict[str, Any]]:
        """Name, model, extractor and state of every deployment this server knows."""
        out: dict[str, dict[str, Any]] = {}
        if self.plane is not None:
            for rec in self.plane.list_deployments():
                out[rec.name] = {
                    "name": rec.name,
                    "model": rec.model,
                    "extractor": rec.extractor,
                    "replicas": rec.replicas,
                    "cluster": rec.cluster,
                    "state": rec.state,
                    "reason": rec.reason,
                }
        for name, dep in self.snapshot().items():
            out[name] = {
                **out.get(name, {"replicas": 1, "cluster": None, "reason": None}),
                **dep.describe(),
                "state": "running",
            }
        return sorted(out.values(), key=lambda d: d["name"])

    def close(self) -> None:
        with self._lock:
            deps, self.loaded = list(self.loaded.values()), {}
        for dep in deps:
            dep.close()
