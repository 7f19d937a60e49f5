"""How many pixels of large uploads a server process decodes at once.

A 36-megapixel image takes about 10 bytes a pixel while it is decoded, converted and
cut into crops; sixteen at once took a server from 0.3 GB to 3.3 GB, and the small
requests behind them waited seconds. Every upload over :data:`LARGE_PIXELS` (its size
read from the header, before any decoding) holds its pixel count from one budget shared
by all requests in flight, for as long as it is being prepared; when the budget is spent
it waits up to ``wait_s``, then gets 503 with ``Retry-After``. Smaller uploads never
wait on it, so a normal request is not stuck behind big ones.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from despina.core.errors import OverloadedError

#: Uploads over this many pixels draw on the budget; smaller ones do not wait for it.
LARGE_PIXELS = 1_000_000


class PixelBudget:
    """Pixels of large uploads being prepared at once, at most ``capacity`` (an upload
    larger than the whole budget runs alone)."""

    def __init__(self, capacity: int, wait_s: float) -> None:
        self.capacity = capacity
        self.wait_s = wait_s
        self.used = 0
        self.peak = 0  # the most held at once (GET /metrics could show it)
        self._free: asyncio.Condition | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _condition(self) -> asyncio.Condition:
        loop = asyncio.get_running_loop()
        if self._free is None or self._loop is not loop:  # one per event loop
            self._free, self._loop = asyncio.Condition(), loop
        return self._free

    @asynccontextmanager
    async def hold(self, pixels: int) -> AsyncIterator[None]:
        """Hold ``pixels`` of the budget while the block runs; OverloadedError (503) when
        they are not free within ``wait_s``."""
        charge = min(pixels, self.capacity)
        free = self._condition()

        def fits() -> bool:
            return self.used + charge <= self.capacity

        async with free:
            try:
                if not fits():
                    await asyncio.wait_for(free.wait_for(fits), self.wait_s)
            except TimeoutError:
                raise OverloadedError(
                    f"the server is decoding {self.used:,} pixels of large images (its "
                    f"budget is {self.capacity:,}, DESPINA_DECODE_BUDGET_PIXELS); retry shortly",
                    retry_after=1.0,
                ) from None
            self.used += charge
            self.peak = max(self.peak, self.used)
        try:
            yield
        finally:
            async with free:
                self.used -= charge
                free.notify_all()
