"""Dynamic micro-batching: concurrent requests share one model call.

Requests put their work on a bounded queue; a worker thread takes what is queued (up to
``max_batch`` rows), runs each request's preparation (``submit_job``: decoding and checks,
so they cost no second hand-off between threads), runs the model once, and hands each
request its rows back. The worker never waits when nothing else is on its way, so a lone
request pays no batching delay; it waits up to ``max_wait_ms`` only while other requests
are announced (``incoming``), which is when waiting fills the batch. A full queue refuses
at once with :class:`OverloadedError` (HTTP 503 with Retry-After) instead of letting
latency grow.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np

from despina.core.errors import OverloadedError

R = TypeVar("R")
P = TypeVar("P")

#: A request's preparation: what the request keeps for its answer, and its model rows.
Job = Callable[[], tuple[Any, np.ndarray]]


@dataclass
class _Item:
    job: Job | None  # None once run
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop
    payload: Any = None
    rows: np.ndarray | None = None


def _resolve(fut: asyncio.Future[Any], value: Any, error: BaseException | None) -> None:
    if fut.done():
        return
    if error is not None:
        fut.set_exception(error)
    else:
        fut.set_result(value)


def _resolve_all(done: list[tuple[asyncio.Future[Any], Any]]) -> None:
    for fut, value in done:
        _resolve(fut, value, None)


class MicroBatcher(Generic[R]):
    """Run ``fn(rows) -> list[R]`` (one result per row) over batches of queued rows."""

    def __init__(
        self,
        fn: Callable[[np.ndarray], list[R]],
        *,
        max_batch: int = 32,
        max_wait_ms: float = 2.0,
        max_queue: int = 256,
        on_batch: Callable[[int], None] | None = None,
        name: str = "despina-batcher",
        workers: int = 1,
        alone_fn: Callable[[np.ndarray], list[R]] | None = None,
    ) -> None:
        self.fn = fn
        self.alone_fn = alone_fn or fn  # for a lone request run on the caller's thread
        self.max_batch = max(1, max_batch)
        self.max_wait = max_wait_ms / 1000.0
        self.on_batch = on_batch
        self.queue: queue.Queue[_Item | None] = queue.Queue(maxsize=max_queue)
        self.incoming = 0  # requests being decoded that will submit soon (GIL-safe int ops)
        self._running = 0  # model calls in progress
        self._lock = threading.Lock()
        self._closed = False
        self._threads = [
            threading.Thread(target=self._run, name=f"{name}-{i}", daemon=True)
            for i in range(max(1, workers))
        ]
        for t in self._threads:
            t.start()

    @property
    def depth(self) -> int:
        """Requests waiting for the model."""
        return self.queue.qsize()

    @property
    def busy(self) -> bool:
        """Whether a worker is running a model call now."""
        return self._running > 0

    async def submit(self, rows: np.ndarray, alone: bool = False) -> list[R]:
        """The results for ``rows``: :meth:`submit_job` with nothing to prepare."""
        _, results = await self.submit_job(lambda: (None, rows), alone=alone)
        return results

    async def submit_job(
        self, job: Callable[[], tuple[P, np.ndarray]], alone: bool = False
    ) -> tuple[P, list[R]]:
        """Run ``job`` (returning a payload and model rows) on a worker, batch its rows
        with other requests', and return the payload with the rows' results. Raises
        OverloadedError when the queue is full, and whatever ``job`` raises.

        ``alone`` says no other request is in flight: then, if the worker is idle and
        nothing is queued, the job and the model run on the caller's thread, because a
        hand-off to the worker and back costs more than a small model call
        (benchmarks/serving.py prints the per-request cost of the hand-offs). The model
        runtime must allow concurrent calls (ONNX Runtime sessions and FAISS searches do).
        """
        if self._closed:
            raise _stopped()
        if alone and not self.busy and self.queue.empty():
            payload, rows = job()
            if self.on_batch is not None:
                self.on_batch(len(rows))
            return payload, self.alone_fn(rows)
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[tuple[P, list[R]]] = loop.create_future()
        try:
            self.queue.put_nowait(_Item(job, fut, loop))
        except queue.Full:
            raise OverloadedError(
                f"the endpoint is at capacity ({self.queue.maxsize} requests queued); "
                "retry shortly",
                retry_after=1.0,
            ) from None
        return await fut

    def close(self) -> None:
        """Stop the workers after the batches in hand; a request still queued (one that
        raced the close, as when a deployment is cancelled under load) gets an error
        instead of waiting forever."""
        self._closed = True
        for _ in self._threads:
            self.queue.put(None)
        for t in self._threads:
            t.join(10)
        while True:
            try:
                item = self.queue.get_nowait()
            except queue.Empty:
                return
            if item is not None:
                item.loop.call_soon_threadsafe(_resolve, item.future, None, _stopped())

    @staticmethod
    def _prepared(item: _Item) -> bool:
        """Run the item's job once; on failure the error goes to its request alone."""
        if item.job is not None:
            job, item.job = item.job, None
            try:
                item.payload, item.rows = job()
            except BaseException as exc:
                item.loop.call_soon_threadsafe(_resolve, item.future, None, exc)
                return False
        return True

    def _run(self) -> None:
        carry: _Item | None = None  # a request that did not fit this worker's last batch
        while True:
            first = carry or self.queue.get()
            carry = None
            if first is None:
                return
            if not self._prepared(first):
                continue
            assert first.rows is not None
            batch, rows = [first], len(first.rows)
            deadline = time.perf_counter() + self.max_wait
            while rows < self.max_batch:
                waiting = self.incoming > 0 and time.perf_counter() < deadline
                try:  # the next item, None on close
                    if waiting:
                        item = self.queue.get(timeout=max(1e-4, deadline - time.perf_counter()))
                    else:
                        item = self.queue.get_nowait()
                except queue.Empty:
                    if waiting:
                        continue
                    break
                if item is None:
                    self.queue.put(None)  # close after this batch
                    break
                if not self._prepared(item):
                    continue
                assert item.rows is not None
                if rows + len(item.rows) > self.max_batch:
                    carry = item
                    break
                batch.append(item)
                rows += len(item.rows)
            self._execute(batch)

    def _execute(self, batch: list[_Item]) -> None:
        parts = [b.rows for b in batch if b.rows is not None]
        if self.on_batch is not None:
            self.on_batch(sum(len(r) for r in parts))
        with self._lock:
            self._running += 1
            alone = self._running == 1 and self.queue.empty() and self.incoming == 0
        try:
            x = parts[0] if len(parts) == 1 else np.concatenate(parts)
            # Nothing else running, waiting or on its way: the call may use every model
            # thread (the lone function), as a lone request run inline does.
            results = (self.alone_fn if alone else self.fn)(x)
        except BaseException as exc:  # the error goes to every waiting request
            for b in batch:
                b.loop.call_soon_threadsafe(_resolve, b.future, None, exc)
            return
        finally:
            with self._lock:
                self._running -= 1
        # One hand-back per event loop for the whole batch: each call_soon_threadsafe
        # writes to the loop's wake-up socket, a system call and a wake-up apiece.
        answers: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Any]]] = {}
        start = 0
        for b, r in zip(batch, parts, strict=True):
            part = results[start : start + len(r)]
            start += len(r)
            answers.setdefault(b.loop, []).append((b.future, (b.payload, part)))
        for loop, done in answers.items():
            loop.call_soon_threadsafe(_resolve_all, done)


def _stopped() -> OverloadedError:
    return OverloadedError(
        "this deployment was stopped while the request waited; retry, or see "
        "GET /v1/deployments for what is served",
        retry_after=1.0,
    )
