"""Deployments on a Ray cluster: N Ray Serve replicas of the same :class:`Deployment`
code (decode, quality flags, extraction, micro-batched ONNX Runtime, drift), called from
the API server through a deployment handle, so the routes, errors and answers are the
same as in-process. Serve's own HTTP proxy stays off: the API server is the one door.
"""

from __future__ import annotations

import logging
from typing import Any

from despina.control.executors.ray import connect
from despina.control.models import Cluster
from despina.control.models import Deployment as DeploymentRecord
from despina.core import errors
from despina.core.errors import DespinaError, ModelError
from despina.serving.settings import ServingSettings

logger = logging.getLogger(__name__)
_REPLICA: Any = None


def _replica_class() -> Any:
    """The Serve deployment class, defined once Ray is imported (Ray is an extra)."""
    global _REPLICA
    if _REPLICA is not None:
        return _REPLICA
    from ray import serve

    @serve.deployment(ray_actor_options={"num_cpus": 0.5})
    class DespinaReplica:
        def __init__(self, name: str, model: str, extractor: str, settings: dict[str, Any]):
            from despina.serving.deployment import Deployment
            from despina.serving.settings import ServingSettings

            self.deployment = Deployment(name, model, extractor, ServingSettings(**settings))

        async def predict(self, data: bytes, filename: str) -> dict[str, Any]:
            # Despina's errors cross the actor boundary as data, so the API server can
            # answer with the same status code and message as in-process.
            try:
                return {"ok": await self.deployment.predict(data, filename)}
            except DespinaError as exc:
                return {"error": type(exc).__name__, "status": exc.http_status, "detail": str(exc)}

        def drift(self) -> dict[str, Any]:
            return self.deployment.drift.report()

        def describe(self) -> dict[str, Any]:
            return self.deployment.describe()

    _REPLICA = DespinaReplica
    return _REPLICA


def _error(kind: str, detail: str) -> DespinaError:
    """The replica's error as the same Despina exception class, raised here."""
    cls = getattr(errors, kind, None)
    if isinstance(cls, type) and issubclass(cls, DespinaError):
        return cls(detail)
    return DespinaError(detail)


class _RemoteDrift:
    def __init__(self, handle: Any) -> None:
        self.handle = handle

    def report(self) -> dict[str, Any]:
        return dict(self.handle.drift.remote().result(timeout_s=30))


class RayServed:
    """A deployment served by Ray Serve replicas, with :class:`Deployment`'s interface."""

    def __init__(
        self,
        record: DeploymentRecord,
        cluster: Cluster,
        settings: ServingSettings,
        observer: Any = None,
    ) -> None:
        from ray import serve

        connect(cluster)
        self.name = record.name
        self.record = record
        self.app_name = f"despina-{record.name}"
        serve.start(proxy_location="Disabled")
        replica = _replica_class().options(num_replicas=record.replicas)
        # Replicas share their node's cores: a lone call keeps to its own threads there,
        # and they sleep when idle.
        replica_settings = settings.model_dump()
        replica_settings["lone_threads"] = settings.lone_threads or settings.threads
        replica_settings["lone_spinning"] = False
        try:
            self.handle = serve.run(
                replica.bind(record.name, record.model, record.extractor, replica_settings),
                name=self.app_name,
                route_prefix=None,
            )
            self._describe = dict(self.handle.describe.remote().result(timeout_s=120))
        except Exception as exc:
            raise ModelError(f"Ray Serve could not start {record.name}: {exc}") from exc
        self.drift = _RemoteDrift(self.handle)
        self.observer = observer

    #: Requests queue inside the replicas; the API server itself holds none.
    queue_depth = 0

    def describe(self) -> dict[str, Any]:
        return {**self._describe, "replicas": self.record.replicas, "cluster": self.record.cluster}

    async def predict(self, data: bytes, filename: str = "upload") -> dict[str, Any]:
        reply = await self.handle.predict.remote(data, filename)
        if "error" in reply:
            raise _error(reply["error"], reply["detail"])
        answer: dict[str, Any] = reply["ok"]
        if self.observer is not None:
            self.observer.prediction(self.name, answer)
        return answer

    def close(self) -> None:
        from ray import serve

        try:
            serve.delete(self.app_name)
        except Exception:  # Ray may already be gone at shutdown
            logger.warning("could not delete Serve application %s", self.app_name)
