"""Request ids and JSON access logs: every response carries ``X-Request-ID`` (the
client's, or a new one), and every request is logged as one JSON line with it."""

from __future__ import annotations

import itertools
import json
import logging
import os
import re
import secrets
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger("despina.access")
_SAFE_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
# New ids: a random prefix per process and a counter, unique without a system call per
# request (uuid4 reads os.urandom, which gives up the GIL, and under load each request's
# thread then waited to get it back).
_PREFIX = secrets.token_hex(8)
_COUNTER = itertools.count()


def _reseed() -> None:
    global _PREFIX, _COUNTER
    _PREFIX, _COUNTER = secrets.token_hex(8), itertools.count()


if hasattr(os, "register_at_fork"):  # a forked child must not repeat its parent's ids
    os.register_at_fork(after_in_child=_reseed)


def new_request_id() -> str:
    """A fresh request id: 32 hex digits, like a UUID's."""
    return f"{_PREFIX}{next(_COUNTER):016x}"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and any ``extra`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        data.update(getattr(record, "fields", {}))
        if record.exc_info:
            data["error"] = self.formatException(record.exc_info)
        return json.dumps(data)


def configure_json_logging(level: int = logging.INFO) -> None:
    """Send Despina's logs (access log included) to stderr as JSON lines."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger("despina")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


class RequestId:
    """ASGI middleware: assign the request id, echo it, log the request as JSON."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(b"x-request-id", b"")[:64].decode("latin-1")
        rid = given if _SAFE_ID.fullmatch(given) else new_request_id()
        scope.setdefault("state", {})["request_id"] = rid
        status = [500]
        t0 = time.perf_counter()

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            if logger.isEnabledFor(logging.INFO):
                logger.info(
                    "request",
                    extra={
                        "fields": {
                            "request_id": rid,
                            "method": scope["method"],
                            "path": scope["path"],
                            "status": status[0],
                            "ms": round((time.perf_counter() - t0) * 1000, 3),
                        }
                    },
                )
