"""A model folder loaded for serving: ONNX Runtime session, preprocessing, FAISS index and
the reference statistics of the training set.

Loading checks the folder completely, so an incomplete folder or one written by another
version of Despina fails at deploy time with a message that says how to rebuild it,
never at the first request.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from despina.core.artifacts import (
    INDEX_FILE,
    ONNX_FILE,
    PREPROCESSING,
)
from despina.core.errors import ModelError
from despina.core.vectors import unit_rows
from despina.jobs.model_folder import read_model_folder
from despina.jobs.serving_artifacts import ood_statistics, ood_z
from despina.preprocessing.image import ImagePipeline
from despina.preprocessing.input_stats import input_z
from despina.security.envelope import read_artifact

#: z-score past which an input or a crop is out of distribution (the outlier check's).
OOD_THRESHOLD = 3.5


@dataclass(frozen=True)
class Inference:
    """Outputs for a batch of preprocessed inputs."""

    probs: np.ndarray  # (n, classes)
    sims: np.ndarray  # (n, k) cosine similarity to the nearest training samples
    neighbors: np.ndarray  # (n, k) their row numbers in the training set
    # (n,) robust z of distance and uncertainty, or of the input's own statistics when
    # those lie farther out; > OOD_THRESHOLD = OOD
    ood_z: np.ndarray


def ood_score(z: float) -> float:
    """The out-of-distribution z as a score in [0, 1]: 0.5 at the flag's threshold."""
    return float(1.0 / (1.0 + np.exp(OOD_THRESHOLD - z)))


def softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


class ServingModel:
    """Everything one deployment needs from its model folder, loaded once."""

    def __init__(
        self,
        folder: str | Path,
        *,
        threads: int = 1,
        lone_threads: int = 0,
        lone_spinning: bool = True,
    ) -> None:
        self.folder, self.meta, self.reference = read_model_folder(folder)
        try:
            self.class_names: list[str] = list(self.meta["class_names"])
            self.ids: list[str] = list(self.reference["ids"])
            self.k = int(self.reference["neighbors"])
            self._ood: dict[str, Any] = dict(self.reference["ood"])
            if len(self._ood["distance"]) != 2 or len(self._ood["uncertainty"]) != 2:
                raise ModelError(f"{self.folder}: reference.json's ood entry is malformed")
            self._inputs = self.reference.get("inputs")
        except (KeyError, TypeError) as exc:
            raise ModelError(f"{self.folder}: model metadata is incomplete ({exc})") from exc
        self.pipeline = ImagePipeline.load(self.folder / PREPROCESSING)
        # The version is the graph's content hash: it changes exactly when the model does.
        graph = read_artifact(self.folder / ONNX_FILE)
        self.version = hashlib.sha256(graph).hexdigest()[:12]
        self.name = self.folder.name
        self._load_runtime(threads, graph, lone_threads, lone_spinning)

    def _load_runtime(
        self, threads: int, graph: bytes, lone_threads: int = 0, lone_spinning: bool = True
    ) -> None:
        import faiss
        import onnxruntime as ort

        def options(n: int, spinning: bool = False) -> ort.SessionOptions:
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = n
            opts.inter_op_num_threads = 1
            # Idle ORT threads spin by default; on a server whose other threads decode and
            # check uploads between model calls, spinning only steals their CPU. A lone
            # call's spinning steals nothing (nothing else waits for a core), and a
            # sleeping second thread wakes late for every operator. A 2.2 ms CNN at
            # concurrency 1 answered in a p50 of 4.8-4.9 ms spinning, 6.1-6.7 ms not
            # (alternating servers with DESPINA_LONE_SPINNING 1 and 0; a development run of
            # what benchmarks/serving_ab.py does).
            opts.add_session_config_entry(
                "session.intra_op.allow_spinning", "1" if spinning else "0"
            )
            opts.log_severity_level = 3
            return opts

        try:
            self.session = ort.InferenceSession(
                graph, options(threads), providers=["CPUExecutionProvider"]
            )
            # A lone request may use every core the concurrent calls would (see infer),
            # and its threads spin: a session of its own whenever it differs.
            lone_differs = lone_threads > threads or (lone_spinning and lone_threads > 1)
            self.lone_session = (
                ort.InferenceSession(
                    graph,
                    options(lone_threads, lone_spinning),
                    providers=["CPUExecutionProvider"],
                )
                if lone_differs
                else self.session
            )
            index_bytes = np.frombuffer(read_artifact(self.folder / INDEX_FILE), dtype=np.uint8)
            self.index = faiss.deserialize_index(index_bytes)
            self._faiss = faiss
        except Exception as exc:  # ORT and FAISS raise their own types for broken files
            raise ModelError(f"cannot load {self.folder}: {exc}") from exc
        if self.index.ntotal != len(self.ids):
            raise ModelError(
                f"{self.folder}: the FAISS index holds {self.index.ntotal} samples but "
                f"reference.json lists {len(self.ids)}; the folder was mixed from two runs"
            )
        shape = self.session.get_inputs()[0].shape
        expected = [self.pipeline.channels, self.pipeline.size, self.pipeline.size]
        if [int(d) for d in shape[1:]] != expected:
            raise ModelError(
                f"{self.folder}: model.onnx takes {shape[1:]} but preprocessing.json makes "
                f"{expected}"
            )
        # Warm up, so the first request does not pay for ORT's lazy initialisation, and
        # time a call: the endpoint runs only cheap calls on its event loop.
        probe = np.zeros((1, *expected), np.float32)
        self.infer(probe)
        if self.lone_session is not self.session:
            self.infer(probe, lone=True)
        times = []
        for _ in range(5):  # the median: one call can land on a busy moment
            t0 = time.perf_counter()
            self.infer(probe)
            times.append((time.perf_counter() - t0) * 1000)
        self.call_ms = float(np.median(times))

    def infer(self, x: np.ndarray, lone: bool = False) -> Inference:
        """Classify preprocessed inputs (n, C, H, W) and place them among the training set.

        ``lone``: no other model call is running, so the call may use the lone session's
        threads (as many as all concurrent calls together; the same session by default).
        """
        session = self.lone_session if lone else self.session
        logits, emb = session.run(None, {"x": np.ascontiguousarray(x, np.float32)})
        probs = softmax(logits)
        # A few queries are cheap on one thread; OpenMP's threads would spin after every
        # search and take the CPU the other requests need. OpenMP's thread count is a
        # setting of the calling thread, so it is set here, on the thread that searches:
        # set once at load, the batcher's threads searched on every core (a ResNet-18-sized
        # endpoint spent a tenth of its CPU in FAISS; benchmarks/serving.py).
        self._faiss.omp_set_num_threads(1)
        sims, idx = self.index.search(unit_rows(emb), self.k)
        z = ood_z(*ood_statistics(sims, probs), self._ood)
        return Inference(probs, sims, idx, np.maximum(z, input_z(x, self._inputs)))
