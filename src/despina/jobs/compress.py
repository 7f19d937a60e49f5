"""Make a served model smaller and faster: structured channel pruning with a short
fine-tune (:mod:`despina.jobs.prune`), then ONNX Runtime's static int8 quantization.

Static, not dynamic: activations are quantized with ranges calibrated on training images
(QDQ format, per-channel weights), which is what speeds up convolutions on a CPU;
dynamic quantization suits recurrent and transformer models and slows a CNN down. The
compressed model is measured against the original on a held-out split of labelled data
(the source given), and refused, with nothing written, when it loses more accuracy than
allowed. The output is a model folder ``despina serve`` and ``despina deploy`` accept as
it is; ``model.json`` records what was done.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from despina.core.artifacts import MODEL_CONFIG, ONNX_FILE, SERVING_FILES, WEIGHTS
from despina.core.errors import ConfigError, NotFoundError
from despina.security.envelope import read_artifact

#: Images the activation ranges are calibrated on.
CALIBRATION_IMAGES = 256


@dataclass(frozen=True)
class Compression:
    """Accuracy on the held-out split and images per second (one thread) before and after."""

    accuracy_before: float
    accuracy_after: float
    rate_before: dict[int, float]
    rate_after: dict[int, float]
    out: Path

    @property
    def drop_points(self) -> float:
        return 100 * (self.accuracy_before - self.accuracy_after)


def _session(model: bytes | str, threads: int = 1) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])


def _accuracy(session: Any, x: np.ndarray, y: np.ndarray) -> float:
    right = 0
    for i in range(0, len(x), 256):
        logits = session.run(None, {"x": x[i : i + 256]})[0]
        right += int((logits.argmax(1) == y[i : i + 256]).sum())
    return right / max(1, len(x))


def images_per_second(session: Any, x: np.ndarray, batch: int, seconds: float = 1.5) -> float:
    """Images per second at ``batch`` (repeating ``x``'s first images), after a warm-up."""
    xb = np.ascontiguousarray(np.resize(x, (batch, *x.shape[1:])), dtype=np.float32)
    session.run(None, {"x": xb})
    done, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        session.run(None, {"x": xb})
        done += batch
    return done / (time.perf_counter() - t0)


def _split(data: dict[str, Any], seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The labelled images as (calibration, held-out x, y)."""
    from despina.training.trainer import validation_split

    x, y = data["x"], data["labels"]
    train, held_out = validation_split(y, 0.2, seed)
    pick = np.random.default_rng(seed).permutation(train)[:CALIBRATION_IMAGES]
    return x[pick], x[held_out], y[held_out]


class _Calibration:
    """ONNX Runtime's calibration reader: the calibration images, 32 at a time."""

    def __init__(self, x: np.ndarray) -> None:
        self.batches = iter([x[i : i + 32] for i in range(0, len(x), 32)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self.batches, None)
        return None if batch is None else {"x": np.ascontiguousarray(batch, np.float32)}


def compress(
    model_dir: str | Path,
    source: str,
    out: str | Path,
    *,
    max_drop: float = 0.5,
    seed: int = 0,
    int8: bool = True,
    prune: float | None = None,
    fine_tune_epochs: int = 30,
) -> Compression:
    """Prune ``prune`` of the CNN's channels (fine-tuned on ``source``) and/or quantize the
    ONNX graph to int8 (static, QDQ, per-channel, calibrated on ``source``'s images); write
    the model folder to ``out`` unless it loses more than ``max_drop`` accuracy points on
    the held-out 20% (then a ConfigError, nothing written)."""
    from despina.jobs.prune import labelled_data, prune_folder

    model_dir, out = Path(model_dir), Path(out)
    if not (model_dir / ONNX_FILE).is_file():
        raise NotFoundError(f"{model_dir} is not a served model folder (no {ONNX_FILE})")
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out} exists and is not empty; choose a new --out")
    if max_drop < 0:
        raise ConfigError(f"--max-drop {max_drop}: give the accuracy points you accept losing")
    if not int8 and prune is None:
        raise ConfigError("nothing to do: give --prune FRACTION, --int8, or both")
    data = labelled_data(model_dir, source)  # read once: calibration, fine-tune, held-out
    calibration, x, y = _split(data, seed)
    steps: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        plain = Path(tmp) / "fp32.onnx"
        plain.write_bytes(read_artifact(model_dir / ONNX_FILE))
        origin, final = model_dir, plain
        if prune is not None:
            origin = Path(tmp) / "pruned"
            steps["pruning"] = prune_folder(model_dir, data, origin, prune, seed=seed,
                                            epochs=fine_tune_epochs)  # fmt: skip
            final = origin / ONNX_FILE
        if int8:
            final = _quantize(final, Path(tmp), calibration)
            steps["int8"] = {
                "method": "onnxruntime static int8 (QDQ, per-channel)",
                "calibration_images": len(calibration),
            }
        before, after = _session(str(plain)), _session(str(final))
        result = Compression(
            accuracy_before=_accuracy(before, x, y),
            accuracy_after=_accuracy(after, x, y),
            rate_before={b: images_per_second(before, x, b) for b in (1, 64)},
            rate_after={b: images_per_second(after, x, b) for b in (1, 64)},
            out=out,
        )
        if result.drop_points > max_drop:
            raise ConfigError(
                f"{' + '.join(steps)} lost {result.drop_points:.2f} accuracy points on the "
                f"held-out 20% ({result.accuracy_before:.4f} → {result.accuracy_after:.4f}), "
                f"more than --max-drop {max_drop:g}; nothing was written (keep the fp32 model, "
                "prune less, or allow more)"
            )
        staging = Path(
            tempfile.mkdtemp(prefix=".compress-", dir=out.parent if out.parent.exists() else None)
        )
        for extra in model_dir.iterdir():  # the detector, other files: copied as they are
            unfit = prune is not None and extra.name == WEIGHTS  # pruned: the weights differ
            if extra.is_file() and not (origin / extra.name).exists() and not unfit:
                (staging / extra.name).write_bytes(read_artifact(extra))
        for name in SERVING_FILES:
            if (origin / name).is_file():
                (staging / name).write_bytes(read_artifact(origin / name))
        shutil.copyfile(final, staging / ONNX_FILE)
        meta = json.loads((staging / MODEL_CONFIG).read_text())
        meta["compression"] = {
            **steps,
            "held_out_accuracy": [result.accuracy_before, result.accuracy_after],
        }
        (staging / MODEL_CONFIG).write_text(json.dumps(meta, indent=2))
        if out.exists():
            out.rmdir()
        staging.rename(out)
    return result


def has_vnni() -> bool:
    """Whether this CPU multiplies 8-bit integers with VNNI (AVX-512 VNNI or AMX), as torch
    detects it (the way ``training.trainer.native_bf16`` asks about bfloat16)."""
    import torch

    return bool(torch.cpu._is_vnni_supported() or torch.cpu._is_amx_tile_supported())


def _quantize(model: Path, tmp: Path, calibration: np.ndarray) -> Path:
    """``model`` quantized to static int8 (QDQ, per-channel), calibrated on ``calibration``."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = tmp / "prepared.onnx"
    quant_pre_process(str(model), str(prepared), skip_symbolic_shape=True)
    quantized = tmp / "int8.onnx"
    quantize_static(
        str(prepared),
        str(quantized),
        _Calibration(calibration),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        # Without VNNI, ONNX Runtime's u8 x s8 kernels add pairs of products in 16 bits,
        # which saturate with full-range weights (a CNN lost 22 points); 7-bit weights fit.
        reduce_range=not has_vnni(),
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )
    return quantized
