"""A client of the REST API with the same methods as :class:`ControlPlane`, so the CLI (or
a script) works the same against a server or the embedded store."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.parquet as pq

from despina.control.models import (
    ActivityEntry,
    Cluster,
    ClusterSpec,
    Deployment,
    DeploymentSpec,
    GroupSpec,
    GroupStatus,
    Review,
    Task,
    TaskGroup,
    TokenInfo,
    User,
)
from despina.core.errors import (
    AuthError,
    ConfigError,
    ConflictError,
    DespinaError,
    ForbiddenError,
    ModelError,
    NotFoundError,
    PathEscapeError,
    RateLimitedError,
    StateError,
)
from despina.security.credentials import client_token
from despina.security.settings import ca_bundle_from_env

_BY_NAME: dict[str, type[DespinaError]] = {
    "NotFoundError": NotFoundError,
    "ConflictError": ConflictError,
    "StateError": StateError,
    "PathEscapeError": PathEscapeError,
    "ConfigError": ConfigError,
    "ModelError": ModelError,
    "AuthError": AuthError,
    "ForbiddenError": ForbiddenError,
    "RateLimitedError": RateLimitedError,
}


class HttpControlClient:
    """Talks to ``despina server start`` at ``base_url`` with a Bearer token (``token``,
    else ``DESPINA_TOKEN`` or the token file, see :mod:`despina.security.credentials`);
    ``verify`` is a CA bundle path for a server whose certificate is self-signed;
    ``anonymous`` sends no token (to log in with a password)."""

    def __init__(
        self,
        base_url: str,
        timeout: float = 30.0,
        token: str | None = None,
        verify: str | bool | None = None,
        anonymous: bool = False,
    ) -> None:
        import ssl

        self.base_url = base_url.rstrip("/")
        token = None if anonymous else token or client_token()
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        if verify is None:
            verify = ca_bundle_from_env() or True
        tls: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=verify) if isinstance(verify, str) else verify
        )
        self._http = httpx.Client(
            base_url=self.base_url, timeout=timeout, headers=headers, verify=tls
        )

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            resp = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise DespinaError(
                f"cannot reach the Despina server at {self.base_url}: {exc}; start it with "
                "'despina server start' or drop --server to use the local store"
            ) from None
        if resp.status_code >= 400:
            try:
                body = resp.json()
            except ValueError:
                body = {"detail": resp.text}
            cls = _BY_NAME.get(str(body.get("error")), DespinaError)
            if cls is DespinaError and resp.status_code == 422:
                cls = ConfigError
            detail = str(body.get("detail", resp.text))
            if resp.status_code == 401 and "DESPINA_TOKEN" not in detail:
                detail += " (the CLI sends DESPINA_TOKEN, or the token saved by despina login)"
            raise cls(detail)
        return (
            resp.json()
            if resp.content and resp.headers.get("content-type", "").startswith("application/json")
            else resp
        )

    # ---- clusters -------------------------------------------------------------------
    def create_cluster(self, spec: ClusterSpec) -> Cluster:
        return Cluster(**self._call("POST", "/v1/clusters", json=spec.model_dump(mode="json")))

    def list_clusters(self) -> list[Cluster]:
        return [Cluster(**c) for c in self._call("GET", "/v1/clusters")]

    def get_cluster(self, name: str) -> Cluster:
        return Cluster(**self._call("GET", f"/v1/clusters/{name}"))

    def delete_cluster(self, name: str) -> None:
        self._call("DELETE", f"/v1/clusters/{name}")

    # ---- deployments ----------------------------------------------------------------
    def create_deployment(self, spec: DeploymentSpec) -> Deployment:
        return Deployment(**self._call("POST", "/v1/deployments", json=spec.model_dump()))

    def list_reviews(self, group: str) -> list[Review]:
        return [Review(**r) for r in self._call("GET", f"/v1/groups/{group}/reviews")]

    def list_deployments(self) -> list[Deployment]:
        fields = Deployment.model_fields
        return [
            Deployment(**{k: v for k, v in d.items() if k in fields})
            for d in self._call("GET", "/v1/deployments")
        ]

    def get_deployment(self, name: str) -> Deployment:
        for d in self.list_deployments():
            if d.name == name:
                return d
        raise NotFoundError(f"no deployment named {name!r}; see 'despina deployments ls'")

    def delete_deployment(self, name: str) -> None:
        self._call("DELETE", f"/v1/deployments/{name}")

    # ---- users, tokens, activity ----------------------------------------------------
    def create_user(self, name: str, role: str, password: str | None = None) -> User:
        if password is not None:
            raise ConfigError("set passwords on the server's machine: despina user add --password")
        return User(**self._call("POST", "/v1/users", json={"name": name, "role": role}))

    def list_users(self) -> list[User]:
        return [User(**u) for u in self._call("GET", "/v1/users")]

    def delete_user(self, name: str) -> None:
        self._call("DELETE", f"/v1/users/{name}")

    def create_token(
        self, user: str, expires: str | None = None, scopes: tuple[str, ...] = ()
    ) -> tuple[str, TokenInfo]:
        body = self._call(
            "POST", "/v1/tokens", json={"user": user, "expires": expires, "scopes": scopes}
        )
        token = body.pop("token")
        return token, TokenInfo(**body)

    def list_tokens(self, user: str | None = None) -> list[TokenInfo]:
        params = {"user": user} if user else {}
        return [TokenInfo(**t) for t in self._call("GET", "/v1/tokens", params=params)]

    def revoke_token(self, token_id: str) -> TokenInfo:
        return TokenInfo(**self._call("DELETE", f"/v1/tokens/{token_id}"))

    def list_events(self, limit: int = 100, offset: int = 0) -> list[ActivityEntry]:
        params = {"limit": limit, "offset": offset}
        return [ActivityEntry(**e) for e in self._call("GET", "/v1/events", params=params)]

    def verify_events(self, expect: str | None = None) -> dict[str, Any]:
        params = {"expect": expect} if expect else {}
        return dict(self._call("GET", "/v1/events/verify", params=params))

    def login(self, user: str, password: str, expires: str = "12h") -> tuple[str, TokenInfo]:
        """A password for a token (``POST /v1/login``)."""
        body = self._call(
            "POST", "/v1/login", json={"user": user, "password": password, "expires": expires}
        )
        token = body.pop("token")
        return token, TokenInfo(**body)

    def whoami(self) -> dict[str, Any]:
        return dict(self._call("GET", "/v1/whoami"))

    # ---- groups ---------------------------------------------------------------------
    def create_group(self, spec: GroupSpec) -> TaskGroup:
        return TaskGroup(**self._call("POST", "/v1/groups", json=spec.model_dump(mode="json")))

    def get_group(self, name: str) -> TaskGroup:
        return TaskGroup(**self._call("GET", f"/v1/groups/{name}"))

    def group_env(self, name: str) -> dict[str, str]:
        return dict(self._call("GET", f"/v1/groups/{name}/env"))

    def list_groups(self, cluster: str | None = None) -> list[TaskGroup]:
        params = {"cluster": cluster} if cluster else {}
        return [TaskGroup(**g) for g in self._call("GET", "/v1/groups", params=params)]

    def delete_group(self, name: str) -> None:
        self._call("DELETE", f"/v1/groups/{name}")

    def start_group(self, name: str, *, wait: bool = False, poll_s: float = 0.5) -> list[Task]:
        tasks = [Task(**t) for t in self._call("POST", f"/v1/groups/{name}/start")]
        while wait and not all(t.state.terminal for t in tasks):
            time.sleep(poll_s)
            tasks = self.list_tasks(group=name)
        return tasks

    def retry_failed(self, name: str) -> list[Task]:
        return [Task(**t) for t in self._call("POST", f"/v1/groups/{name}/retry")]

    def group_result(self, name: str) -> pa.Table:
        resp = self._call("GET", f"/v1/groups/{name}/result")
        return pq.read_table(pa.BufferReader(resp.content))

    def group_status(self, name: str) -> GroupStatus:
        return GroupStatus(**self._call("GET", f"/v1/groups/{name}/status"))

    # ---- tasks ----------------------------------------------------------------------
    def list_tasks(
        self,
        group: str | None = None,
        state: str | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[Task]:
        out: list[Task] = []
        page = min(limit or 1000, 1000)
        while True:
            params: dict[str, Any] = {"limit": page, "offset": offset + len(out)}
            if group:
                params["group"] = group
            if state:
                params["state"] = state
            items = self._call("GET", "/v1/tasks", params=params)["items"]
            out += [Task(**t) for t in items]
            if len(items) < page or (limit is not None and len(out) >= limit):
                return out[:limit] if limit is not None else out

    def get_task(self, task_id: int) -> Task:
        return Task(**self._call("GET", f"/v1/tasks/{task_id}")["task"])

    def task_events(self, task_id: int) -> list[dict[str, Any]]:
        return list(self._call("GET", f"/v1/tasks/{task_id}")["events"])

    def cancel_task(self, task_id: int) -> Task:
        return Task(**self._call("POST", f"/v1/tasks/{task_id}/cancel"))

    def retry_task(self, task_id: int) -> Task:
        return Task(**self._call("POST", f"/v1/tasks/{task_id}/retry"))

    def task_logs(self, task_id: int, offset: int = 0) -> tuple[str, int]:
        resp = self._call("GET", f"/v1/tasks/{task_id}/logs", params={"offset": offset})
        return resp.text, int(resp.headers.get("X-Log-Offset", offset))

    def follow_logs(self, task_id: int) -> Iterator[str]:
        self.get_task(task_id)
        with self._http.stream(
            "GET", f"/v1/tasks/{task_id}/logs", params={"follow": "true"}, timeout=None
        ) as resp:
            yield from resp.iter_text()
