"""Failed-authentication limiter: after ``limit`` failures from one client within
``window_s``, that client is refused (429) until the window has passed."""

from __future__ import annotations

import threading
import time
from collections import deque


class FailureLimiter:
    """Per-client sliding window of failure times; thread-safe, in memory, per process."""

    def __init__(self, limit: int = 20, window_s: float = 60.0, max_clients: int = 10_000) -> None:
        self.limit = limit
        self.window_s = window_s
        self.max_clients = max_clients
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, client: str, now: float) -> deque[float] | None:
        q = self._failures.get(client)
        if q is not None:
            while q and q[0] <= now - self.window_s:
                q.popleft()
            if not q:
                del self._failures[client]
                return None
        return q

    def retry_after(self, client: str) -> float:
        """Seconds the client must wait, or 0 when it may try."""
        now = time.monotonic()
        with self._lock:
            q = self._recent(client, now)
            if q is None or len(q) < self.limit:
                return 0.0
            return max(1.0, q[-self.limit] + self.window_s - now)

    def failed(self, client: str) -> None:
        now = time.monotonic()
        with self._lock:
            if client not in self._failures and len(self._failures) >= self.max_clients:
                # Bounded memory under a flood from many addresses: forget the oldest client.
                self._failures.pop(next(iter(self._failures)))
            q = self._recent(client, now) or self._failures.setdefault(client, deque())
            q.append(now)
            if len(q) > self.limit:
                q.popleft()
