"""The micro-batcher: concurrent requests share model calls; a full queue refuses at once."""

from __future__ import annotations

import asyncio
import contextlib
import threading

import numpy as np
import pytest

from despina.core.errors import OverloadedError
from despina.serving.batching import MicroBatcher


def test_concurrent_requests_share_batches_and_get_their_own_rows() -> None:
    calls: list[int] = []

    def double(x: np.ndarray) -> list[float]:
        calls.append(len(x))
        return list(x[:, 0] * 2)

    batcher: MicroBatcher[float] = MicroBatcher(double, max_batch=16, max_wait_ms=20)

    async def main() -> list[list[float]]:
        batcher.incoming = 32  # 32 requests are on their way
        results = await asyncio.gather(
            *(batcher.submit(np.array([[float(i)], [float(i) + 0.5]])) for i in range(32))
        )
        batcher.incoming = 0
        return results

    try:
        results = asyncio.run(main())
    finally:
        batcher.close()
    assert results == [[2.0 * i, 2.0 * i + 1.0] for i in range(32)]
    assert sum(calls) == 64 and max(calls) <= 16 and len(calls) < 32


def test_a_batch_is_handed_back_to_the_event_loop_at_once() -> None:
    """Each hand-back wakes the loop through its wake-up socket: one per batch, not one
    per request."""
    batcher: MicroBatcher[float] = MicroBatcher(
        lambda x: list(x[:, 0] + 1), max_batch=16, max_wait_ms=200
    )
    wakeups: list[int] = []

    async def main() -> list[list[float]]:
        loop = asyncio.get_running_loop()
        original = loop.call_soon_threadsafe

        def counted(*args: object) -> object:
            wakeups.append(1)
            return original(*args)  # type: ignore[arg-type]

        loop.call_soon_threadsafe = counted  # type: ignore[method-assign]
        batcher.incoming = 8  # eight requests on their way: the batch waits for them
        pending = [asyncio.ensure_future(batcher.submit(np.array([[float(i)]]))) for i in range(8)]
        await asyncio.sleep(0)  # all eight queued
        batcher.incoming = 0
        return await asyncio.gather(*pending)

    try:
        results = asyncio.run(main())
    finally:
        batcher.close()
    assert results == [[float(i) + 1] for i in range(8)]
    assert len(wakeups) < 8, wakeups


def test_two_model_workers_run_batches_at_once_and_answer_every_row() -> None:
    running, most = 0, 0
    lock = threading.Lock()
    both = threading.Barrier(2, timeout=5)  # passes only if two calls overlap
    overlapped = threading.Event()

    def slow_double(x: np.ndarray) -> list[float]:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        if not overlapped.is_set() and not both.broken:
            with contextlib.suppress(threading.BrokenBarrierError):
                both.wait()
                overlapped.set()
        with lock:
            running -= 1
        return list(x[:, 0] * 2)

    batcher: MicroBatcher[float] = MicroBatcher(slow_double, max_batch=4, workers=2)

    async def main() -> list[list[float]]:
        return await asyncio.gather(*(batcher.submit(np.array([[float(i)]])) for i in range(16)))

    try:
        results = asyncio.run(main())
    finally:
        batcher.close()
    assert results == [[2.0 * i] for i in range(16)]
    assert most == 2 and not batcher.busy


def test_a_lone_request_does_not_wait_for_company() -> None:
    batcher: MicroBatcher[float] = MicroBatcher(lambda x: list(x[:, 0]), max_wait_ms=5000)

    async def main() -> float:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await batcher.submit(np.zeros((1, 1)))
        return loop.time() - t0

    try:
        assert asyncio.run(main()) < 1.0
    finally:
        batcher.close()


def test_a_full_queue_refuses_with_retry_after_and_errors_reach_every_request() -> None:
    release = threading.Event()

    def slow(x: np.ndarray) -> list[float]:
        release.wait(10)
        if (x < 0).any():
            raise ValueError("negative input")
        return list(x[:, 0])

    batcher: MicroBatcher[float] = MicroBatcher(slow, max_batch=1, max_queue=2)

    async def main() -> None:
        first = asyncio.ensure_future(batcher.submit(np.ones((1, 1))))
        while not batcher.busy:  # the worker holds the first...
            await asyncio.sleep(0.01)
        queued = [asyncio.ensure_future(batcher.submit(np.ones((1, 1)))) for _ in range(2)]
        while batcher.depth < 2:  # ...and two more fill the queue
            await asyncio.sleep(0.01)
        with pytest.raises(OverloadedError, match="capacity") as info:
            await batcher.submit(np.ones((1, 1)))
        assert info.value.retry_after >= 1
        assert info.value.http_status == 503
        release.set()
        assert await first == [1.0]
        assert [await q for q in queued] == [[1.0], [1.0]]
        with pytest.raises(ValueError, match="negative"):
            await batcher.submit(-np.ones((1, 1)))

    try:
        asyncio.run(main())
    finally:
        batcher.close()


def test_jobs_are_prepared_on_the_worker_and_a_failing_one_fails_alone() -> None:
    prepared_on: set[str] = set()

    def job(i: int):  # type: ignore[no-untyped-def]
        def run() -> tuple[str, np.ndarray]:
            prepared_on.add(threading.current_thread().name)
            if i == 3:
                raise ValueError("upload 3 is not an image")
            return f"upload {i}", np.array([[float(i)]])

        return run

    batcher: MicroBatcher[float] = MicroBatcher(lambda x: list(x[:, 0] * 2), name="worker")

    async def main() -> list[object]:
        return await asyncio.gather(
            *(batcher.submit_job(job(i)) for i in range(8)), return_exceptions=True
        )

    try:
        results = asyncio.run(main())
    finally:
        batcher.close()
    assert prepared_on == {"worker-0"}
    assert isinstance(results[3], ValueError)
    assert [r for i, r in enumerate(results) if i != 3] == [
        (f"upload {i}", [2.0 * i]) for i in range(8) if i != 3
    ]


def test_a_lone_job_runs_inline_when_the_worker_is_idle() -> None:
    batcher: MicroBatcher[float] = MicroBatcher(lambda x: list(x[:, 0]), name="worker")

    async def main() -> tuple[str, list[float]]:
        return await batcher.submit_job(
            lambda: (threading.current_thread().name, np.ones((1, 1))), alone=True
        )

    try:
        assert asyncio.run(main()) == ("MainThread", [1.0])
    finally:
        batcher.close()


def test_a_request_that_races_a_close_gets_an_error_instead_of_waiting_forever() -> None:
    batcher: MicroBatcher[float] = MicroBatcher(lambda x: [float(v) for v in x.ravel()])
    batcher.close()

    async def late() -> None:
        await asyncio.wait_for(batcher.submit(np.ones((1, 1))), timeout=5)

    with pytest.raises(OverloadedError, match="stopped"):
        asyncio.run(late())

    async def queued_behind_the_close() -> None:  # put in the queue after the workers left
        loop = asyncio.get_running_loop()
        from despina.serving.batching import _Item

        fut: asyncio.Future[object] = loop.create_future()
        batcher.queue.put_nowait(_Item(lambda: (None, np.ones((1, 1))), fut, loop))
        batcher.close()
        await asyncio.wait_for(fut, timeout=5)

    with pytest.raises(OverloadedError, match="stopped"):
        asyncio.run(queued_behind_the_close())
