"""Despina's errors as HTTP responses, the same from a route and from a middleware."""

from __future__ import annotations

from fastapi.responses import JSONResponse

from despina.core.errors import AuthError, DespinaError, OverloadedError, RateLimitedError


def error_response(exc: DespinaError) -> JSONResponse:
    """``{"error", "detail"}`` with the error's status; ``Retry-After`` when waiting helps,
    ``WWW-Authenticate`` when a token is missing or bad."""
    headers = {}
    if isinstance(exc, OverloadedError | RateLimitedError):
        headers["Retry-After"] = str(max(1, round(exc.retry_after)))
    elif isinstance(exc, AuthError) and exc.http_status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="despina"'
    return JSONResponse(
        {"error": type(exc).__name__, "detail": str(exc)},
        status_code=exc.http_status,
        headers=headers,
    )
