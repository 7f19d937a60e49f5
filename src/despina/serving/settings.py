"""Every setting of the serving layer, read from the environment here and nowhere else.

The table of all ``DESPINA_`` variables is in docs/configuration.md.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import Field

from despina.core.config import FrozenModel, env_flag

#: The default of ServingSettings.inline_call_ms: model calls up to this long (measured
#: at load) may run on the event loop, with the upload's preparation when it is at most
#: INLINE_BYTES long, when the request is alone (see deployment.runs_inline): it then skips
#: the hand-offs to the batcher's thread and back, which lowers a lone request's latency at
#: the same rate under load (docs/benchmarks.md, serving). A call this long holds up the
#: loop's other work for its length, as a batch in progress holds up the requests behind it.
INLINE_CALL_MS = 5.0
INLINE_BYTES = 256 * 2**10


class ServingSettings(FrozenModel):
    """Limits and batching of every deployment a server hosts (``DESPINA_`` environment)."""

    max_upload_bytes: int = Field(20 * 2**20, ge=1, description="larger uploads get 413")
    max_pixels: int = Field(36_000_000, ge=1, description="larger images get 422")
    decode_budget_pixels: int = Field(
        0,
        ge=0,
        description="pixels of large uploads decoded at once, all requests together; "
        "0: twice max_pixels",
    )
    decode_wait_s: float = Field(
        2.0, ge=0, description="longest wait for the decode budget before 503 Retry-After"
    )
    max_batch: int = Field(32, ge=1, description="rows per model call; 1 turns batching off")
    max_wait_ms: float = Field(
        2.0, ge=0, description="longest wait to fill a batch with large uploads being decoded"
    )
    max_queue: int = Field(256, ge=1, description="queued requests before 503")
    threads: int = Field(1, ge=1, description="ONNX Runtime threads per model call")
    model_workers: int = Field(1, ge=1, description="model calls that may run at once")
    lone_threads: int = Field(
        0, ge=0, description="ONNX Runtime threads for a call nothing else waits on; 0: every core"
    )
    lone_spinning: bool = Field(
        True, description="a lone call's idle ONNX Runtime threads spin instead of sleeping"
    )
    inline_call_ms: float = Field(
        INLINE_CALL_MS,
        ge=0,
        description="a lone request's model call up to this long runs on the event loop",
    )
    opencv_threads: int = Field(
        1, ge=0, description="OpenCV's threads in a serving process; 0: OpenCV's default"
    )
    top_k: int = Field(3, ge=1, le=100)

    @property
    def decode_budget(self) -> int:
        return self.decode_budget_pixels or 2 * self.max_pixels

    drift_window: int = Field(1000, ge=10)

    @classmethod
    def from_env(cls, **overrides: Any) -> ServingSettings:
        env = {
            "max_upload_bytes": "DESPINA_MAX_UPLOAD_BYTES",
            "max_pixels": "DESPINA_MAX_PIXELS",
            "decode_budget_pixels": "DESPINA_DECODE_BUDGET_PIXELS",
            "decode_wait_s": "DESPINA_DECODE_WAIT_S",
            "max_batch": "DESPINA_MAX_BATCH",
            "max_wait_ms": "DESPINA_MAX_WAIT_MS",
            "max_queue": "DESPINA_MAX_QUEUE",
            "threads": "DESPINA_INFERENCE_THREADS",
            "model_workers": "DESPINA_MODEL_WORKERS",
            "lone_threads": "DESPINA_LONE_THREADS",
            "lone_spinning": "DESPINA_LONE_SPINNING",
            "opencv_threads": "DESPINA_OPENCV_THREADS",
            "inline_call_ms": "DESPINA_INLINE_CALL_MS",
        }
        values: dict[str, Any] = {k: os.environ[v] for k, v in env.items() if v in os.environ}
        return cls(**{**values, **overrides})


class AuthSettings(FrozenModel):
    """``DESPINA_AUTH`` (``on``; ``off`` only for a machine nobody else can reach),
    ``DESPINA_METRICS_PUBLIC`` (let Prometheus scrape without a token),
    ``DESPINA_AUTH_FAIL_LIMIT`` failures per ``DESPINA_AUTH_FAIL_WINDOW`` seconds before 429."""

    enabled: bool = True
    metrics_public: bool = False
    fail_limit: int = Field(20, ge=1)
    fail_window_s: float = Field(60.0, gt=0)
    cache_s: float = Field(2.0, ge=0, description="how long a checked token is trusted")

    @classmethod
    def from_env(cls) -> AuthSettings:
        return cls(
            enabled=env_flag("DESPINA_AUTH", True),
            metrics_public=env_flag("DESPINA_METRICS_PUBLIC", False),
            fail_limit=int(os.environ.get("DESPINA_AUTH_FAIL_LIMIT", 20)),
            fail_window_s=float(os.environ.get("DESPINA_AUTH_FAIL_WINDOW", 60)),
        )


class ServeOneSettings(FrozenModel):
    """What ``despina serve`` hands each of its worker processes: one model folder."""

    model: Path
    name: str
    extractor: str = "whole"

    @classmethod
    def from_env(cls) -> ServeOneSettings:
        return cls(
            model=os.environ["DESPINA_SERVE_MODEL"],
            name=os.environ["DESPINA_SERVE_NAME"],
            extractor=os.environ.get("DESPINA_SERVE_EXTRACTOR", "whole"),
        )

    def to_env(self) -> dict[str, str]:
        return {
            "DESPINA_SERVE_MODEL": str(self.model),
            "DESPINA_SERVE_NAME": self.name,
            "DESPINA_SERVE_EXTRACTOR": self.extractor,
        }


#: How ``run_workers`` tells each process its slot in the shared peers file.
PEERS_FILE, PEER_SLOT = "DESPINA_PEERS_FILE", "DESPINA_PEER_SLOT"


def peer_slot_from_env() -> tuple[str, int] | None:
    """The peers file and slot ``run_workers`` handed this process; None when alone."""
    path, slot = os.environ.get(PEERS_FILE), os.environ.get(PEER_SLOT)
    return None if not path or slot is None else (path, int(slot))


def proxy_options() -> dict[str, Any]:
    """uvicorn's options for ``X-Forwarded-For``: trusted only from the proxies the operator
    names in ``DESPINA_TRUSTED_PROXIES`` (comma-separated addresses). uvicorn's own default
    trusts it from 127.0.0.1, where any local client could then pick its own address and
    slip past the failed-login limiter."""
    proxies = os.environ.get("DESPINA_TRUSTED_PROXIES", "").strip()
    if not proxies:
        return {"proxy_headers": False}
    return {"proxy_headers": True, "forwarded_allow_ips": proxies}
