"""What a model folder needs to serve: an ONNX graph, a FAISS index of the training set and
the reference statistics the endpoint compares each upload with.

Written next to the weights by every job that saves a model, so any model folder can be
deployed. Nothing here is pickled: ONNX, FAISS's own index format and JSON.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from despina.audit.checks.defect import defect_reference
from despina.audit.image_stats import STAT_NAMES
from despina.core.artifacts import FORMAT_VERSION, INDEX_FILE, ONNX_FILE, REFERENCE_FILE
from despina.core.vectors import unit_rows
from despina.preprocessing.input_stats import input_reference

if TYPE_CHECKING:
    from despina.models.base import EmbeddingClassifier

NEIGHBORS = 5
#: Where the 99th percentile of held-out samples' out-of-distribution z is placed: its
#: spread differs between datasets, so the flag's threshold counts in units of it.
TAIL_Z = 2.33
#: Statistics whose input distribution the drift monitor follows.
DRIFT_FEATURES = ("brightness", "contrast", "detail", "sharpness", "color_spread")
DRIFT_BINS = 10


def _robust(v: np.ndarray) -> list[float]:
    v = v[np.isfinite(v)]
    if v.size == 0:
        return [0.0, 1.0]
    med = float(np.median(v))
    return [med, float(np.median(np.abs(v - med))) * 1.4826]


def ood_statistics(sims: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Log mean cosine distance to the k nearest training samples, and log uncertainty:
    the two quantities of the audit's outlier check, for rows of new inputs."""
    dist = np.maximum((1.0 - sims).sum(axis=1) / sims.shape[1], 1e-6)  # mean, minus its checks
    return np.log(dist), np.log(1.0 - probs.max(axis=1) + 1e-4)


def ood_z(log_dist: np.ndarray, log_unc: np.ndarray, ood: dict[str, Any]) -> np.ndarray:
    """The robust z of distance and uncertainty against the reference's ``ood`` entry,
    rescaled so that the 99th percentile of samples the trainer held out sits at
    :data:`TAIL_Z` (a folder written before the rescaling keeps scale 1)."""
    d_med, d_mad = ood["distance"]
    u_med, u_mad = ood["uncertainty"]
    z = ((log_dist - d_med) / max(d_mad, 0.05) + (log_unc - u_med) / max(u_mad, 0.1)) / np.sqrt(2.0)
    return np.asarray(z * float(ood.get("scale", 1.0)))


def _drift_reference(stats: np.ndarray, predicted: np.ndarray, classes: int) -> dict[str, Any]:
    """The drift baseline of an image model: its drift features' deciles and the predicted
    class frequencies (population stability index baseline)."""
    columns = {name: stats[:, STAT_NAMES.index(name)] for name in DRIFT_FEATURES}
    return feature_drift_reference(columns, predicted, classes)


def index_and_ood(
    model: EmbeddingClassifier,
    folder: Path,
    x: np.ndarray,
    labels: np.ndarray,
    *,
    validation_fraction: float,
    seed: int,
) -> tuple[dict[str, Any], np.ndarray]:
    """Export ``model`` to ONNX, index the training set ``x`` (preprocessed, as trained)
    and calibrate the out-of-distribution score; the reference entries every model folder
    has, and the training set's probabilities.

    The out-of-distribution score is calibrated on the samples the trainer held out for
    early stopping (same split, same seed), since the model has fitted the others and
    would make every new input look far away.
    """
    import faiss

    from despina.models.export import export_classifier
    from despina.training.trainer import predict, validation_split

    faiss.omp_set_num_threads(1)
    diff = export_classifier(model, folder / ONNX_FILE, x[: min(8, len(x))])
    probs, emb = predict(model, x)
    emb = unit_rows(emb)
    index = faiss.IndexFlatIP(emb.shape[1])
    index.add(emb)
    faiss.write_index(index, str(folder / INDEX_FILE))

    tr, va = validation_split(labels, validation_fraction, seed)
    # A tiny dataset has too few held-out samples: use all, each left out of its own
    # neighbours (its nearest neighbour is itself).
    tiny = len(va) < 10
    held_out, fitted_rows, self_match = (np.arange(len(x)), emb, 1) if tiny else (va, emb[tr], 0)
    fitted = faiss.IndexFlatIP(emb.shape[1])
    fitted.add(fitted_rows)
    k = min(NEIGHBORS, fitted.ntotal - self_match)
    sims = fitted.search(emb[held_out], k + self_match)[0][:, self_match:]
    log_dist, log_unc = ood_statistics(sims, probs[held_out])
    ood: dict[str, Any] = {"distance": _robust(log_dist), "uncertainty": _robust(log_unc)}
    tail = float(np.quantile(ood_z(log_dist, log_unc, ood), 0.99))
    ood["scale"] = TAIL_Z / max(tail, 1.0)
    core = {
        "format_version": FORMAT_VERSION,
        "neighbors": int(k),
        "ood": ood,
        "held_out_accuracy": float((probs[held_out].argmax(axis=1) == labels[held_out]).mean()),
        "training_accuracy": float((probs.argmax(axis=1) == labels).mean()),
        "onnx_max_difference": diff,
    }
    return core, probs


def write_serving_artifacts(
    model: EmbeddingClassifier,
    folder: Path,
    x: np.ndarray,
    labels: np.ndarray,
    ids: Sequence[str],
    stats: np.ndarray,
    *,
    validation_fraction: float,
    seed: int,
) -> dict[str, Any]:
    """An image model folder's serving files: ONNX, the index, and reference.json with
    the out-of-distribution calibration, the defect bounds, input statistics and drift."""
    core, probs = index_and_ood(
        model, folder, x, labels, validation_fraction=validation_fraction, seed=seed
    )
    reference = {
        **core,
        "ids": list(ids),
        "defects": defect_reference(stats),
        "inputs": input_reference(x),
        "drift": _drift_reference(stats, probs.argmax(axis=1), probs.shape[1]),
    }
    (folder / REFERENCE_FILE).write_text(json.dumps(reference))
    return reference


def feature_drift_reference(
    columns: dict[str, np.ndarray], predicted: np.ndarray, classes: int
) -> dict[str, Any]:
    """Decile bin edges and training fractions of named feature columns, and the predicted
    class frequencies: the drift baseline of a table or sequence model."""
    features = {}
    for name, v in columns.items():
        v = v[np.isfinite(v)]
        if v.size == 0:
            continue
        edges = np.unique(np.quantile(v, np.linspace(0, 1, DRIFT_BINS + 1)[1:-1]))
        counts = np.bincount(np.searchsorted(edges, v, side="right"), minlength=len(edges) + 1)
        features[name] = {
            "edges": [float(e) for e in edges],
            "fractions": [float(c) for c in counts / max(1, counts.sum())],
        }
    freq = np.bincount(predicted, minlength=classes) / max(1, len(predicted))
    return {"features": features, "classes": [float(f) for f in freq]}


def write_record_artifacts(
    model: EmbeddingClassifier,
    folder: Path,
    x: np.ndarray,
    labels: np.ndarray,
    ids: Sequence[str],
    drift_columns: dict[str, np.ndarray],
    extra: dict[str, Any],
    *,
    validation_fraction: float,
    seed: int,
) -> dict[str, Any]:
    """A table or sequence model folder's serving files: ONNX, the index, and
    reference.json with the calibration, the drift baseline and ``extra`` (value bounds)."""
    core, probs = index_and_ood(
        model, folder, x, labels, validation_fraction=validation_fraction, seed=seed
    )
    reference = {
        **core,
        "ids": list(ids),
        "drift": feature_drift_reference(drift_columns, probs.argmax(axis=1), probs.shape[1]),
        **extra,
    }
    (folder / REFERENCE_FILE).write_text(json.dumps(reference))
    return reference
