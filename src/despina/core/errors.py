"""One exception tree for Despina.

Every error Despina raises on purpose derives from :class:`DespinaError` and from the
built-in exception a Python user would expect, so ``except ValueError`` keeps working::

    DespinaError(Exception)
    ├── ConfigError(DespinaError, ValueError)      bad options or configuration
    ├── DataError(DespinaError, ValueError)        a dataset that cannot be audited
    │   └── PathEscapeError(DataError)             a path outside the allowed root
    ├── NotFoundError(DespinaError, LookupError)   a file, dataset, check or model that is not there
    ├── ConflictError(DespinaError, ValueError)    a name already taken, a resource in use
    ├── StateError(DespinaError, ValueError)       an illegal task state change
    ├── InputError(DespinaError, ValueError)       an upload that is not a usable image
    │   ├── TooLargeError(InputError)              an upload over the size limit (413)
    │   └── MediaTypeError(InputError)             an upload of the wrong content type (415)
    ├── OverloadedError(DespinaError, RuntimeError) queue full or still loading (503)
    ├── AuthError(DespinaError, PermissionError)    no token, or a bad, expired or revoked one (401)
    │   ├── ForbiddenError(AuthError)              a valid token without the right (403)
    │   └── RateLimitedError(AuthError)            too many failed attempts from one client (429)
    ├── IntegrityError(DespinaError, ValueError)   a tampered or truncated artifact or log
    ├── ModelError(DespinaError, RuntimeError)     a saved model that cannot be loaded
    ├── CheckError(DespinaError, RuntimeError)     a check that failed while running
    └── TaskError(DespinaError, RuntimeError)      a task's own code failed (recorded on the task)

``exit_code`` is what the CLI exits with; ``http_status`` what the API answers.

Findings in the data (a mislabeled image, a blurry photo) are results, never exceptions.
Messages say what went wrong and what to do about it.
"""

from __future__ import annotations


class DespinaError(Exception):
    """Base class of every error Despina raises on purpose."""

    exit_code: int = 1
    http_status: int = 500


class ConfigError(DespinaError, ValueError):
    """An option or configuration value is invalid."""

    exit_code = 2
    http_status = 422


class DataError(DespinaError, ValueError):
    """The dataset cannot be audited as given (empty, one class, bad manifest...)."""

    exit_code = 3
    http_status = 422


class PathEscapeError(DataError):
    """A path resolves outside the folder it is confined to."""

    http_status = 403


class NotFoundError(DespinaError, LookupError):
    """A file, dataset, check or model that was asked for does not exist."""

    exit_code = 4
    http_status = 404


class ConflictError(DespinaError, ValueError):
    """A name is already taken, or something still uses what is being removed."""

    exit_code = 6
    http_status = 409


class StateError(DespinaError, ValueError):
    """A task or group cannot make the state change asked for."""

    exit_code = 7
    http_status = 409


class InputError(DespinaError, ValueError):
    """An uploaded input cannot be used: not an image, truncated, empty, too many pixels."""

    exit_code = 3
    http_status = 422


class TooLargeError(InputError):
    """An upload is larger than the endpoint accepts; refused before it is read."""

    http_status = 413


class MediaTypeError(InputError):
    """An upload arrived with a content type the endpoint does not take."""

    http_status = 415


class OverloadedError(DespinaError, RuntimeError):
    """The endpoint cannot take the request now (its queue is full, or its deployment is
    still loading); the client should retry after ``retry_after`` seconds."""

    exit_code = 9
    http_status = 503

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class AuthError(DespinaError, PermissionError):
    """The request carries no token, or one that is unknown, expired or revoked."""

    exit_code = 10
    http_status = 401


class ForbiddenError(AuthError):
    """The token is valid but its role or scope does not allow this."""

    http_status = 403


class RateLimitedError(AuthError):
    """Too many failed attempts from one client; it should wait ``retry_after`` seconds."""

    http_status = 429

    def __init__(self, message: str, retry_after: float = 60.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class IntegrityError(DespinaError, ValueError):
    """Stored data failed its integrity check: tampered with, truncated or under another key."""

    exit_code = 11
    http_status = 500


class ModelError(DespinaError, RuntimeError):
    """A saved model is missing parts or does not match its configuration."""

    exit_code = 5
    http_status = 422


class CheckError(DespinaError, RuntimeError):
    """A quality check failed while running (recorded in the report, not raised by audits)."""


class TaskError(DespinaError, RuntimeError):
    """A task's own code (a job or a user script) failed; recorded on the task."""

    exit_code = 8
