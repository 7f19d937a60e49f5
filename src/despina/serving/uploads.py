"""Uploads: a size limit enforced before the body is read, and multipart parsing that
turns every way an upload can be wrong into one of Despina's errors (413, 415, 422)."""

from __future__ import annotations

from typing import Any

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from despina.core.errors import InputError, MediaTypeError, TooLargeError

MAX_FILES = 64


class BodyLimit:
    """ASGI middleware: refuse bodies over ``limit`` bytes on the upload routes.

    A declared Content-Length over the limit is answered 413 before a byte is read; a
    chunked body is counted as it streams and cut off at the limit, so nothing larger
    ever sits in memory.
    """

    def __init__(self, app: ASGIApp, limit: int, prefix: str = "/v1/deployments/") -> None:
        self.app = app
        self.limit = limit
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await _too_large(send, self.limit)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise TooLargeError(_too_large_text(self.limit))
            return message

        await self.app(scope, counted, send)


def _too_large_text(limit: int) -> str:
    return (
        f"the upload is larger than this server's {limit / 2**20:.0f} MiB limit; "
        "send a smaller image (DESPINA_MAX_UPLOAD_BYTES sets the limit)"
    )


async def _too_large(send: Send, limit: int) -> None:
    import json

    body = json.dumps({"error": "TooLargeError", "detail": _too_large_text(limit)}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def read_uploads(request: Request, field: str, many: bool) -> list[tuple[str, bytes]]:
    """(filename, bytes) of the file parts named ``field`` of a multipart request."""
    ctype = request.headers.get("content-type", "")
    if not ctype.startswith("multipart/form-data"):
        raise MediaTypeError(
            f"send the image as multipart/form-data with a field named {field!r} "
            f"(got content type {ctype or 'none'!r}), e.g. curl -F {field}=@image.png"
        )
    try:
        form = await request.form(max_files=MAX_FILES if many else 1, max_fields=MAX_FILES)
    except TooLargeError:
        raise
    except Exception as exc:  # Starlette raises its own types for malformed multipart
        raise InputError(f"the multipart body cannot be parsed: {exc}") from exc
    try:
        parts: list[Any] = form.getlist(field)
        files = [p for p in parts if isinstance(p, UploadFile)]
        if not files:
            raise InputError(
                f"no file field named {field!r} in the upload (fields: "
                f"{', '.join(sorted(form.keys())) or 'none'}); e.g. curl -F {field}=@image.png"
            )
        if not many and len(files) > 1:
            raise InputError(f"send one file in {field!r}, or use predict-batch for several")
        out = [(f.filename or field, await f.read()) for f in files]
    finally:
        await form.close()
    for name, data in out:
        if not data:
            raise InputError(f"{name}: the upload is empty; attach an image file")
    return out
