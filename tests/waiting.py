"""The one way tests wait: poll a condition until it holds, or fail saying what never happened."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import httpx

T = TypeVar("T")


def wait_for(
    condition: Callable[[], T],
    timeout: float = 60.0,
    every: float = 0.05,
    what: str = "condition",
    alive: Callable[[], object] | None = None,
) -> T:
    """Poll ``condition()`` until it returns something true and return that; a connection
    error counts as not yet. Fail at ``timeout`` saying ``what``, or at once when ``alive()``
    (a process the wait depends on) returns false."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = condition()
        except httpx.HTTPError:
            value = None  # type: ignore[assignment]
        if value:
            return value
        if alive is not None and not alive():
            raise AssertionError(f"gave up waiting for {what}: the process it needs has died")
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} not met within {timeout}s")
        time.sleep(every)
