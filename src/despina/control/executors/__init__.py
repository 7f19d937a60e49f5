"""Executors run tasks somewhere: local worker processes or Ray tasks (one interface)."""

from despina.control.executors.base import Executor, Outcome

__all__ = ["Executor", "Outcome"]
