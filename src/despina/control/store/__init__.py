"""The control plane's store: SQLAlchemy 2 over SQLite (default) or PostgreSQL."""

from despina.control.store.sql import Store

__all__ = ["Store"]
