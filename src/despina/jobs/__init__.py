"""Jobs: the workflows a user runs, composed from the layers below."""

from despina.jobs.audit import audit

__all__ = ["audit"]
