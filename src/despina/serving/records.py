"""Serving table and sequence models: JSON records in, predictions and per-record quality
flags out.

``POST /v1/deployments/{name}/predict`` with ``{"records": [{column: value, ...}, ...]}``
for a table model, or ``{"series": [[v0, v1, ...], ...]}`` (one list per channel when a
series has several: ``[[[c0...], [c1...]], ...]``) for a sequence model. Each record is
flagged before the model sees it: missing, mistyped and out-of-range cells, categories
the model never saw, columns it does not know (tables); missing or infinite steps and a
length other than the trained one (series); and out of distribution by the same
embedding-and-uncertainty score as images. A request's records form one batch for the
model; requests are not merged with each other.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from starlette.concurrency import run_in_threadpool

from despina.core.artifacts import INDEX_FILE, ONNX_FILE, PREPROCESSING
from despina.core.errors import InputError, MediaTypeError, ModelError
from despina.core.vectors import unit_rows
from despina.data.tables import numeric_values
from despina.jobs.model_folder import read_model_folder
from despina.jobs.serving_artifacts import ood_statistics, ood_z
from despina.preprocessing.sequence import SequencePipeline
from despina.preprocessing.table import TablePipeline
from despina.security.envelope import read_artifact
from despina.serving.drift import DriftMonitor
from despina.serving.model import OOD_THRESHOLD, ood_score, softmax
from despina.serving.settings import ServingSettings

#: The most records one request may carry.
MAX_RECORDS = 10_000
RECORD_KINDS = ("table", "sequence")
#: The flags of each kind of record; a record's findings (``kind:where``) set them.
FLAGS = {
    "table": ("missing", "type", "out_of_range", "unseen_category", "unknown_column"),
    "sequence": ("missing", "nonfinite", "length"),
}


def is_record_model(folder: str | Path) -> bool:
    """Whether a model folder holds a table or sequence model (read without loading it)."""
    _, meta, _ = read_model_folder(folder)
    return meta.get("kind") in RECORD_KINDS


class RecordDeployment:
    """A table or sequence model folder served to JSON requests."""

    def __init__(
        self, name: str, model_dir: str | Path, settings: ServingSettings | None = None
    ) -> None:
        import faiss
        import onnxruntime as ort

        self.name = name
        self.settings = settings or ServingSettings()
        self.folder, self.meta, self.reference = read_model_folder(model_dir)
        self.kind = str(self.meta.get("kind"))
        if self.kind not in RECORD_KINDS:
            raise ModelError(f"{self.folder} is not a table or sequence model folder")
        try:
            self.class_names = list(self.meta["class_names"])
            self.ids = list(self.reference["ids"])
            self.k = int(self.reference["neighbors"])
            self.ood = dict(self.reference["ood"])
            drift_ref = self.reference["drift"]
        except (KeyError, TypeError) as exc:
            raise ModelError(f"{self.folder}: model metadata is incomplete ({exc})") from exc
        if self.kind == "table":
            self.table = TablePipeline.load(self.folder / PREPROCESSING)
            # Looked up for every categorical cell of every record: built once.
            self.categories = {c: set(v) for c, v in self.table.categories_.items()}
        else:
            self.series = SequencePipeline.load(self.folder / PREPROCESSING)
        graph = read_artifact(self.folder / ONNX_FILE)
        self.version = hashlib.sha256(graph).hexdigest()[:12]
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.settings.threads
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(graph, opts, providers=["CPUExecutionProvider"])
            index = np.frombuffer(read_artifact(self.folder / INDEX_FILE), dtype=np.uint8)
            self.index = faiss.deserialize_index(index)
        except Exception as exc:  # ORT and FAISS raise their own types for broken files
            raise ModelError(f"cannot load {self.folder}: {exc}") from exc
        self._faiss = faiss
        self.drift_names = list(drift_ref["features"])
        self.drift = DriftMonitor(
            drift_ref, self.class_names, self.settings.drift_window, names=self.drift_names
        )
        self.observer: Any = None

    queue_depth = 0

    def close(self) -> None:
        """Nothing runs in the background."""

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "model": str(self.folder),
            "version": self.version,
            "kind": self.kind,
            "classes": self.class_names,
        }

    async def predict(self, data: bytes, filename: str = "upload") -> dict[str, Any]:
        raise MediaTypeError(
            f"deployment {self.name} serves a {self.kind} model: POST JSON "
            + ('{"records": [{...}]}' if self.kind == "table" else '{"series": [[...]]}')
            + " with Content-Type: application/json, not a file"
        )

    async def predict_records(self, body: Any) -> dict[str, Any]:
        return await run_in_threadpool(self.answer, body)

    def answer(self, body: Any) -> dict[str, Any]:
        """Predictions and flags for the records of one request body."""
        x, findings, drift_rows = self._table(body) if self.kind == "table" else self._series(body)
        logits, emb = self.session.run(None, {"x": np.ascontiguousarray(x, np.float32)})
        probs = softmax(logits)
        self._faiss.omp_set_num_threads(1)
        sims, idx = self.index.search(unit_rows(emb), self.k)
        z = ood_z(*ood_statistics(sims, probs), self.ood)
        out = []
        for r in range(len(x)):
            ood = bool(z[r] > OOD_THRESHOLD)
            top = int(probs[r].argmax())
            kinds = {f.split(":", 1)[0] for f in findings[r]}
            flags = {k: k in kinds for k in FLAGS[self.kind]}
            out.append(
                {
                    "label": self.class_names[top],
                    "confidence": round(float(probs[r, top]), 4),
                    "probabilities": {
                        n: round(float(p), 4)
                        for n, p in zip(self.class_names, probs[r], strict=True)
                    },
                    "flags": {**flags, "out_of_distribution": ood},
                    "findings": findings[r],
                    "ood_score": round(ood_score(float(z[r])), 4),
                    "nearest": {
                        "id": self.ids[int(idx[r, 0])],
                        "similarity": round(float(sims[r, 0]), 4),
                    },
                }
            )
            if not ood:
                self.drift.observe(drift_rows[r], [top])
            if self.observer is not None:
                for flag, value in out[-1]["flags"].items():
                    if value:
                        self.observer.flags.labels(self.name, flag).inc()
        answer = {
            "deployment": self.name,
            "model": {"name": self.folder.name, "version": self.version, "kind": self.kind},
            "predictions": out,
        }
        return answer

    def _table(self, body: Any) -> tuple[np.ndarray, list[list[str]], np.ndarray]:
        records = _items(body, "records")
        if not all(isinstance(r, dict) for r in records):
            raise InputError('each record must be a JSON object: {"column": value, ...}')
        schema = self.table.schema
        names = [c.name for c in schema.columns]
        frame = pd.DataFrame(
            [{n: _cell(r.get(n)) for n in names} for r in records], columns=names, dtype=object
        )
        bounds = self.reference.get("bounds", {})
        findings: list[list[str]] = []
        for i, record in enumerate(records):
            found: list[str] = [f"unknown_column:{c}" for c in record if c not in names]
            for c in schema.columns:
                v = frame.at[i, c.name]
                if v is None:
                    found.append(f"missing:{c.name}")
                elif c.kind == "numeric":
                    number = _number(v)
                    if number is None or not math.isfinite(number):
                        found.append(f"type:{c.name}")
                    elif c.name in bounds and not bounds[c.name][0] <= number <= bounds[c.name][1]:
                        found.append(f"out_of_range:{c.name}")
                elif str(v) not in self.categories.get(c.name, set()):
                    found.append(f"unseen_category:{c.name}")
            findings.append(found)
        drift = np.stack(
            [numeric_values(frame[n]) if n in frame else np.full(len(frame), np.nan)
             for n in self.drift_names], axis=1,
        ) if self.drift_names else np.zeros((len(frame), 0))  # fmt: skip
        return self.table.transform(frame), findings, drift

    def _series(self, body: Any) -> tuple[np.ndarray, list[list[str]], np.ndarray]:
        items = _items(body, "series")
        channels, length = len(self.series.center_), self.series.length_
        arrays = []
        for i, item in enumerate(items):
            try:
                a = np.asarray(item, dtype=np.float64)
            except (TypeError, ValueError):
                raise InputError(f"series {i} is not a list of numbers") from None
            a = a[None, :] if a.ndim == 1 else a
            if a.ndim != 2 or a.shape[0] != channels or a.shape[1] == 0:
                raise InputError(
                    f"series {i} has shape {list(a.shape)}; the model reads {channels} "
                    f"channel(s) of up to {length} steps"
                )
            arrays.append(a)
        x = np.full((len(arrays), channels, max(length, *(a.shape[1] for a in arrays))), np.nan)
        findings: list[list[str]] = []
        drift = np.zeros((len(arrays), len(self.drift_names)))
        for i, a in enumerate(arrays):
            x[i, :, : a.shape[1]] = a
            missing, infinite = int(np.isnan(a).sum()), int(np.isinf(a).sum())
            found = [f"missing:{missing}"] * bool(missing) + [f"nonfinite:{infinite}"] * bool(
                infinite
            )
            if a.shape[1] != length:
                found.append(f"length:{a.shape[1]}")
            findings.append(found)
            finite = np.where(np.isfinite(a), a, np.nan)
            summary = {}
            for c, name in enumerate(self.reference.get("channels", [])):
                summary[f"{name}_mean"] = (
                    float(np.nanmean(finite[c])) if missing < a.size else np.nan
                )
                summary[f"{name}_std"] = float(np.nanstd(finite[c])) if missing < a.size else np.nan
            drift[i] = [summary.get(n, np.nan) for n in self.drift_names]
        return self.series.transform(x.astype(np.float32)), findings, drift


def _items(body: Any, key: str) -> list[Any]:
    items = body.get(key) if isinstance(body, dict) else None
    if not isinstance(items, list) or not items:
        raise InputError(f'send a JSON object with a non-empty "{key}" list')
    if len(items) > MAX_RECORDS:
        raise InputError(f"{len(items)} {key} in one request; send at most {MAX_RECORDS}")
    return items


def _cell(value: Any) -> Any:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return value


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
