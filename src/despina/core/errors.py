"""One exception tree for Despina.

Every error Despina raises on purpose derives from :class:`DespinaError` and from the
built-in exception a Python user would expect, so ``except ValueError`` keeps working::

    DespinaError(Exception)
    ├── ConfigError(DespinaError, ValueError)      bad options or configuration
    ├── DataError(DespinaError, ValueError)        a dataset that cannot be audited
    │   └── PathEscapeError(DataError)             a path outside the allowed root
    ├── NotFoundError(DespinaError, LookupError)   a file, dataset, check or model that is not there
    ├── ModelError(DespinaError, RuntimeError)     a saved model that cannot be loaded
    └── CheckError(DespinaError, RuntimeError)     a check that failed while running

Findings in the data (a mislabeled image, a blurry photo) are results, never exceptions.
Messages say what went wrong and what to do about it.
"""

from __future__ import annotations


class DespinaError(Exception):
    """Base class of every error Despina raises on purpose."""

    exit_code: int = 1


class ConfigError(DespinaError, ValueError):
    """An option or configuration value is invalid."""

    exit_code = 2


class DataError(DespinaError, ValueError):
    """The dataset cannot be audited as given (empty, one class, bad manifest...)."""

    exit_code = 3


class PathEscapeError(DataError):
    """A path resolves outside the folder it is confined to."""


class NotFoundError(DespinaError, LookupError):
    """A file, dataset, check or model that was asked for does not exist."""

    exit_code = 4


class ModelError(DespinaError, RuntimeError):
    """A saved model is missing parts or does not match its configuration."""

    exit_code = 5


class CheckError(DespinaError, RuntimeError):
    """A quality check failed while running (recorded in the report, not raised by audits)."""
