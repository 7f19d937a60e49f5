"""Ray executor: each task is a Ray task with the group's resources, on an existing Ray
cluster (by address) or a local Ray head started with ``auto``.

Cancel and timeouts use ``ray.cancel(force=True)``. Tasks write progress and logs to the
same store as local ones, so a Ray cluster needs a database its nodes can reach
(PostgreSQL by ``DESPINA_DATABASE_URL``) unless it runs on this machine.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from despina.control.executors.base import Outcome
from despina.control.models import Cluster, Resources
from despina.core.errors import ConfigError

logger = logging.getLogger(__name__)


def _remote_run(store_url: str, task_id: int, sealing: dict[str, str]) -> dict[str, Any]:
    import ray

    from despina.control.worker import run_one
    from despina.core.processes import limit_threads

    limit_threads()
    os.environ.update(sealing)
    # Which Ray node runs it: its log says so from the start, its metrics at the end.
    node = ray.get_runtime_context().get_node_id()
    result = run_one(store_url, task_id, where=f"Ray node {node}")
    result.setdefault("metrics", {})["node"] = node
    return result


def connect(cluster: Cluster) -> None:
    """``ray.init`` once per process: ``auto`` starts a local head sized to the cluster."""
    try:
        import ray
    except ImportError as exc:
        raise ConfigError("the ray backend needs Ray: pip install 'despina[ray]'") from exc
    if ray.is_initialized():
        return
    # Ray's own token authentication (RAY_AUTH_MODE=token, on by default since Ray 2.60)
    # is left as the environment sets it: Despina never turns it off.
    if cluster.address in (None, "auto", "local"):
        ray.init(
            num_cpus=max(1, round(cluster.resources.cpus)),
            num_gpus=int(cluster.resources.gpus),
            include_dashboard=False,
            object_store_memory=256 * 2**20,
            logging_level=logging.WARNING,
            log_to_driver=False,
        )
    else:
        ray.init(address=cluster.address, logging_level=logging.WARNING, log_to_driver=False)


class RayExecutor:
    """Up to ``cluster.workers`` Ray tasks at once."""

    def __init__(self, store_url: str, cluster: Cluster, sealing: dict[str, str]) -> None:
        import ray

        connect(cluster)
        self.store_url = store_url
        self.sealing = sealing
        self.workers = cluster.workers
        self._remote = ray.remote(max_retries=0)(_remote_run)
        self._refs: dict[int, Any] = {}

    def free_slots(self) -> int:
        return self.workers - len(self._refs)

    def active(self) -> list[int]:
        return list(self._refs)

    def submit(self, task_id: int, resources: Resources) -> None:
        options: dict[str, Any] = {"num_cpus": resources.cpus, "num_gpus": resources.gpus}
        if resources.memory_gb:
            options["memory"] = int(resources.memory_gb * 2**30)
        self._refs[task_id] = self._remote.options(**options).remote(
            self.store_url, task_id, self.sealing
        )

    def wait(self, timeout: float) -> list[Outcome]:
        import ray

        if not self._refs:
            return []
        by_ref = {ref: tid for tid, ref in self._refs.items()}
        done, _ = ray.wait(list(by_ref), num_returns=len(by_ref), timeout=timeout)
        outcomes = []
        for ref in done:
            tid = by_ref[ref]
            del self._refs[tid]
            try:
                outcomes.append(Outcome(tid, True, None, ray.get(ref)))
            except ray.exceptions.RayTaskError as exc:
                cause = exc.cause if getattr(exc, "cause", None) is not None else exc
                outcomes.append(Outcome(tid, False, str(cause).strip().splitlines()[-1]))
            except ray.exceptions.RayError as exc:
                outcomes.append(Outcome(tid, False, f"{type(exc).__name__}: ray worker failed"))
        return outcomes

    def kill(self, task_id: int) -> None:
        import ray

        ref = self._refs.pop(task_id, None)
        if ref is not None:
            ray.cancel(ref, force=True)

    def close(self) -> None:
        for tid in list(self._refs):
            self.kill(tid)
