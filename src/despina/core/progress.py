"""A small progress protocol: the library reports, the caller decides how to show it."""

from __future__ import annotations

from typing import Protocol


class ProgressReporter(Protocol):
    """Receives progress of long operations; the CLI binds it to Rich progress bars."""

    def start(self, stage: str, total: int | None = None) -> None:
        """A stage begins; ``total`` is the number of steps when known."""

    def advance(self, stage: str, steps: int = 1) -> None:
        """``steps`` more steps of ``stage`` are done."""

    def finish(self, stage: str) -> None:
        """The stage is over."""


class NullProgress:
    """Reports nothing: the default for library calls."""

    def start(self, stage: str, total: int | None = None) -> None:
        pass

    def advance(self, stage: str, steps: int = 1) -> None:
        pass

    def finish(self, stage: str) -> None:
        pass
