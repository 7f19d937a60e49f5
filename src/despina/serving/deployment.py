"""One deployed model: decode an upload once, flag its quality, extract its objects,
classify every crop through the micro-batcher, and watch the inputs for drift."""

from __future__ import annotations

import asyncio
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from starlette.concurrency import run_in_threadpool

from despina.audit.image_stats import image_statistics
from despina.core.errors import InputError, MediaTypeError
from despina.core.processes import usable_cores
from despina.data.decode import decode_bytes, header_size
from despina.serving.batching import MicroBatcher
from despina.serving.budget import LARGE_PIXELS, PixelBudget
from despina.serving.drift import DriftMonitor
from despina.serving.extraction import Box, make_extractor
from despina.serving.model import OOD_THRESHOLD, Inference, ServingModel, ood_score
from despina.serving.peers import PeerSlots
from despina.serving.quality import image_flags
from despina.serving.settings import INLINE_BYTES, ServingSettings

UNKNOWN = "unknown"


@dataclass
class Prepared:
    """An upload after decoding, quality statistics, extraction and preprocessing."""

    width: int
    height: int
    stats: np.ndarray
    flags: dict[str, bool]
    margins: dict[str, float]
    boxes: list[Box]
    rows: np.ndarray  # row 0: the whole image; then one row per box that is not all of it
    object_rows: list[int]  # the row of each box
    timings: dict[str, float] = field(default_factory=dict)
    ready: float = 0.0  # perf_counter() when preparation ended


def loop_has_other_work() -> bool:
    """Whether callbacks other than the running one are ready on this event loop: under
    load, the requests read since the loop last polled its sockets, whose handlers have not
    yet reached ``predict`` and so are not counted in flight. A request that runs
    entirely on the loop never lets them start, so without this test every request of a
    loaded cheap-model endpoint ran inline, one at a time on one core, and none was
    batched. ``_ready`` is asyncio's own queue of ready
    callbacks (CPython's base event loop); a loop without one is taken to be busy."""
    ready = getattr(asyncio.get_running_loop(), "_ready", None)
    return ready is None or len(ready) > 0


def _ms(t0: float) -> float:
    return round((time.perf_counter() - t0) * 1000, 3)


class Deployment:
    """A model folder with an extractor, served behind a micro-batcher."""

    def __init__(
        self,
        name: str,
        model_dir: str | Path,
        extractor: str = "whole",
        settings: ServingSettings | None = None,
        observer: Any = None,
        budget: PixelBudget | None = None,
    ) -> None:
        self.name = name
        self.settings = settings or ServingSettings()
        # Shared by every deployment of a server process (the host passes its own).
        self.budget = budget or PixelBudget(
            self.settings.decode_budget, self.settings.decode_wait_s
        )
        if self.settings.opencv_threads:
            # A server's parallelism is its concurrent requests; on an upload's small
            # images OpenCV's own threads cost more to wake than they save
            # (benchmarks/serving_ab.py measures it). The setting is process-wide.
            cv2.setNumThreads(self.settings.opencv_threads)
        workers, threads = self.settings.model_workers, self.settings.threads
        # A call with nothing else running, waiting or on its way may use every core:
        # faster lone requests, and more throughput when the batcher's queue runs empty.
        lone = self.settings.lone_threads or usable_cores()
        self.model = ServingModel(
            model_dir,
            threads=threads,
            lone_threads=max(lone, workers * threads),
            lone_spinning=self.settings.lone_spinning,
        )
        self.extractor_name = extractor
        self.extractor = make_extractor(extractor, self.model.folder)
        self.drift = DriftMonitor(
            self.model.reference["drift"], self.model.class_names, self.settings.drift_window
        )
        self.observer = observer  # ServingMetrics or None
        self.inflight = 0  # requests inside predict(), counted on the event loop
        # The other processes of `despina serve --workers N`: a call alone in this process
        # takes every core only while they are idle too.
        self.peers = PeerSlots.from_env()
        self.batcher: MicroBatcher[tuple[Any, ...]] = MicroBatcher(
            self._infer_rows,
            alone_fn=self._infer_lone,
            max_batch=self.settings.max_batch,
            max_wait_ms=self.settings.max_wait_ms,
            max_queue=self.settings.max_queue,
            on_batch=self._batch_done,
            name=f"despina-batcher-{name}",
            workers=self.settings.model_workers,
        )

    def close(self) -> None:
        self.batcher.close()

    def _batch_done(self, rows: int) -> None:
        if self.observer is not None:
            self.observer.batch(self.name, rows)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "model": str(self.model.folder),
            "version": self.model.version,
            "extractor": self.extractor_name,
            "classes": self.model.class_names,
        }

    def _infer_rows(self, x: np.ndarray, lone: bool = False) -> list[tuple[Any, ...]]:
        inf: Inference = self.model.infer(x, lone=lone)
        return list(zip(inf.probs, inf.sims, inf.neighbors, inf.ood_z, strict=True))

    def _infer_lone(self, x: np.ndarray) -> list[tuple[Any, ...]]:
        """A call with nothing queued behind it: on every core, unless this is one of
        several server processes and either another one is busy or other requests are in
        flight here. Under load the queue is often empty for a moment while other requests
        are still being read or answered on the event loop, and the other process may be
        idle for that moment too: a call on every core then left the lone session's idle
        threads spinning beside the next batch. A single process keeps its lone calls
        under load, where they help (see __init__)."""
        peers = self.peers
        return self._infer_rows(
            x, lone=peers is None or (self.inflight <= 1 and not peers.others_busy())
        )

    def prepare(self, data: bytes, filename: str = "upload") -> Prepared:
        """Decode, quality flags, extraction and preprocessing (CPU work, off the loop)."""
        t0 = time.perf_counter()
        decoded = decode_bytes(data, filename, self.settings.max_pixels)
        if decoded.defect == "oversized":
            raise InputError(
                f"{filename}: too many pixels ({decoded.reason}); this server decodes images "
                f"up to {self.settings.max_pixels:,} pixels (DESPINA_MAX_PIXELS)"
            )
        if decoded.image is None:
            raise InputError(f"{filename}: {decoded.reason}; upload a PNG, JPEG or other image")
        image = decoded.image
        decode_ms = _ms(t0)
        t1 = time.perf_counter()
        stats = image_statistics(image)
        flags, margins = image_flags(stats, self.model.reference["defects"])
        quality_ms = _ms(t1)
        t2 = time.perf_counter()
        h, w = image.shape[:2]
        # Extractors may propose boxes over the edge (a detector's centre-and-size guess):
        # every box is cut to the image, and an empty one dropped.
        boxes = [c for b in self.extractor.propose(image) if (c := b.clip(w, h)) is not None]
        # Row 0 is the whole image (its own verdict); a box that is all of it reuses it.
        crops, object_rows = [image], []
        for b in boxes:
            if b.as_list() == [0, 0, w, h]:
                object_rows.append(0)
            else:
                object_rows.append(len(crops))
                crops.append(image[b.y : b.y + b.h, b.x : b.x + b.w])
        extract_ms = _ms(t2)
        t3 = time.perf_counter()
        rows = self.model.pipeline.transform(crops)
        timings = {
            "decode": decode_ms,
            "preprocess": round(quality_ms + _ms(t3), 3),
            "extract": extract_ms,
        }
        ready = time.perf_counter()
        return Prepared(w, h, stats, flags, margins, boxes, rows, object_rows, timings, ready)

    async def predict(self, data: bytes, filename: str = "upload") -> dict[str, Any]:
        """The JSON answer for one upload (see the README's endpoint section).

        Decoding and checks of a small upload run on the batcher's worker, right before
        the model call, so it crosses between threads once each way (through the thread
        pool first as well costs throughput under load); a large one is prepared on the
        thread pool, so its decode does not hold up other requests' batches. A lone small
        upload whose model call is under ``inline_call_ms`` is answered on the event loop.
        Preparing every upload on the loop would starve the batcher's hand-backs under load.
        """
        t0 = time.perf_counter()
        self.inflight += 1
        if self.peers is not None and self.inflight == 1:
            self.peers.mark(True)
        try:
            size = header_size(data, filename) if data else None
            pixels = size[0] * size[1] if isinstance(size, tuple) else 0
            large = pixels > LARGE_PIXELS  # held by the budget while it is prepared
            small = len(data) <= INLINE_BYTES and not large
            early: Prepared | None = None
            if not small:  # a long decode would hold up the model worker
                self.batcher.incoming += 1  # a batch may wait for it (max_wait_ms)
                try:
                    async with self.budget.hold(pixels) if large else nullcontext():
                        early = await run_in_threadpool(self.prepare, data, filename)
                finally:
                    self.batcher.incoming -= 1

            def job() -> tuple[Prepared, np.ndarray]:
                prep = early or self.prepare(data, filename)
                return prep, prep.rows

            # A lone small request whose model call is under inline_call_ms runs inline; a
            # dearer call or a large upload goes to a worker, so the loop keeps answering.
            alone = self.runs_inline(small)
            prep, results = await self.batcher.submit_job(job, alone=alone)
        finally:
            self.inflight -= 1
            if self.peers is not None and self.inflight == 0:
                self.peers.mark(False)
        classify_ms = _ms(prep.ready)
        answer = self._answer(prep, results)
        answer["timings_ms"] = {**prep.timings, "classify": classify_ms, "total": _ms(t0)}
        if self.observer is not None:
            self.observer.prediction(self.name, answer)
        return answer

    async def predict_records(self, body: Any) -> dict[str, Any]:
        raise MediaTypeError(
            f"deployment {self.name} serves an image model: upload the image as a "
            "multipart form field named file, not JSON"
        )

    def runs_inline(self, small: bool) -> bool:
        """Whether the request now in ``predict`` is answered on the event loop: it is the
        only one in flight, nothing else waits to run on the loop, its upload is small and
        the model call is cheap."""
        return (
            self.inflight == 1
            and small
            and self.model.call_ms < self.settings.inline_call_ms
            and not loop_has_other_work()
        )

    def _object(self, box: Box, row: tuple[Any, ...]) -> dict[str, Any]:
        probs, _, _, z = row
        order = np.argsort(-probs)[: self.settings.top_k]
        names = self.model.class_names
        ood = bool(z > OOD_THRESHOLD)
        # An unknown object's confidence is that it is unknown, not a class's probability.
        confidence = ood_score(z) if ood else float(probs[order[0]])
        return {
            "box": box.as_list(),
            "label": UNKNOWN if ood else names[int(order[0])],
            "confidence": round(confidence, 4),
            "top_k": [
                {"label": names[int(j)], "confidence": round(float(probs[j]), 4)} for j in order
            ],
            "out_of_distribution": ood,
            "ood_score": round(ood_score(z), 4),
            "extractor_score": round(box.score, 4),
        }

    def _answer(self, prep: Prepared, results: list[tuple[Any, ...]]) -> dict[str, Any]:
        _, sims, idx, z = results[0]
        rows = [results[r] for r in prep.object_rows]
        self.drift.observe(
            prep.stats, [int(p.argmax()) for p, _, _, zr in rows if zr <= OOD_THRESHOLD]
        )
        ood = bool(z > OOD_THRESHOLD)
        return {
            "deployment": self.name,
            "model": {"name": self.model.name, "version": self.model.version},
            "image": {
                "width": prep.width,
                "height": prep.height,
                "flags": {**prep.flags, "out_of_distribution": ood},
                "out_of_distribution": {
                    "flag": ood,
                    "score": round(ood_score(z), 4),
                    "z": round(float(z), 3),
                },
                "nearest": {
                    "id": self.model.ids[int(idx[0])],
                    "similarity": round(float(sims[0]), 4),
                },
                "margins": prep.margins,
            },
            "objects": [self._object(box, row) for box, row in zip(prep.boxes, rows, strict=True)],
        }

    @property
    def queue_depth(self) -> int:
        """Requests waiting for the model."""
        return self.batcher.depth
