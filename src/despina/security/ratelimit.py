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
        self._inflight: dict[str, int] = {}
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

    def begin(self, client: str) -> float:
        """Count an attempt before it is checked: 0 when the client may make it (then call
        :meth:`end`), else the seconds to wait. Attempts in flight count as failures until
        they end, so a burst of concurrent bad attempts cannot all pass the check at once."""
        now = time.monotonic()
        with self._lock:
            q = self._recent(client, now)
            failures = len(q) if q is not None else 0
            if failures + self._inflight.get(client, 0) >= self.limit:
                if q is not None and failures >= self.limit:
                    return max(1.0, q[-self.limit] + self.window_s - now)
                return 1.0
            self._inflight[client] = self._inflight.get(client, 0) + 1
            return 0.0

    def end(self, client: str, ok: bool) -> None:
        """The attempt :meth:`begin` counted is over; a failed one stays counted."""
        with self._lock:
            left = self._inflight.get(client, 1) - 1
            if left > 0:
                self._inflight[client] = left
            else:
                self._inflight.pop(client, None)
            if not ok:
                self._record(client, time.monotonic())

    def failed(self, client: str) -> None:
        with self._lock:
            self._record(client, time.monotonic())

    def _record(self, client: str, now: float) -> None:
        """One failure of ``client`` at ``now`` (the caller holds the lock)."""
        if client not in self._failures and len(self._failures) >= self.max_clients:
            # Bounded memory under a flood from many addresses: forget the oldest client.
            self._failures.pop(next(iter(self._failures)))
        q = self._recent(client, now) or self._failures.setdefault(client, deque())
        q.append(now)
        if len(q) > self.limit:
            q.popleft()
