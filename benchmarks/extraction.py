"""Object extraction on canvases of held-out Fashion-MNIST test images pasted at known
positions onto scikit-image photos: box AP and mAP at IoU 0.5, and the accuracy of the
labels the deployed classifier gives matched objects, for each extractor; plus OpenCV's
face cascade on astronaut() (one face) and coffee() (none).

    python benchmarks/extraction.py --data ../shared/data/fashion-mnist

It trains a classifier (``train`` job) and a detector (``despina train-detector``) on the
training split, with background photos that the evaluation canvases never use, unless
``--model DIR`` gives a model folder that already has both. Every figure comes from the
deployed endpoint's own code path (``Deployment.predict``) on PNG bytes.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from skimage import data as photos

sys.path.insert(0, str(Path(__file__).parent))
from _common import table

from despina.core.config import TrainConfig
from despina.data.decode import as_rgb
from despina.data.sources import FASHION_MNIST_CLASSES, fashion_mnist_arrays
from despina.serving.deployment import Deployment
from despina.serving.extraction import Box, iou
from despina.serving.settings import ServingSettings
from despina.training.detector import synthesize

TRAIN_PHOTOS = (
    "camera",
    "chelsea",
    "coins",
    "grass",
    "gravel",
    "brick",
    "moon",
    "page",
    "text",
    "immunohistochemistry",
    "retina",
    "hubble_deep_field",
    "clock",
    "cell",
)
EVAL_PHOTOS = ("astronaut", "coffee", "rocket", "stereo_motorcycle", "colorwheel")


def photo(name: str) -> np.ndarray:
    img = getattr(photos, name)()
    return as_rgb(img[0] if isinstance(img, tuple) else img)


def png(rgb: np.ndarray) -> bytes:
    return cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))[1].tobytes()


def average_precision(scored: list[tuple[float, bool]], positives: int) -> float:
    """All-point interpolated AP (PASCAL VOC 2010+) from (score, is-true-positive) pairs."""
    if positives == 0:
        return float("nan")
    scored = sorted(scored, key=lambda s: -s[0])
    tp = np.cumsum([s[1] for s in scored])
    fp = np.cumsum([not s[1] for s in scored])
    recall = np.concatenate([[0], tp / positives, [1]])
    precision = np.concatenate([[0], tp / np.maximum(tp + fp, 1), [0]])
    for i in range(len(precision) - 2, -1, -1):
        precision[i] = max(precision[i], precision[i + 1])
    step = np.flatnonzero(recall[1:] != recall[:-1])
    return float(np.sum((recall[step + 1] - recall[step]) * precision[step + 1]))


def match(found: list[dict], truth: list[Box]) -> list[int]:
    """For each found object (most confident first), the truth it matches or -1."""
    used: set[int] = set()
    out = [-1] * len(found)
    order = sorted(range(len(found)), key=lambda i: -found[i]["score"])
    for i in order:
        box = Box(*found[i]["box"])
        best, best_j = 0.5, -1
        for j, t in enumerate(truth):
            v = iou(box, t)
            if j not in used and v >= best:
                best, best_j = v, j
        if best_j >= 0:
            used.add(best_j)
            out[i] = best_j
    return out


def evaluate(dep: Deployment, canvases: list, classes: list[str]) -> dict[str, float]:
    agnostic: list[tuple[float, bool]] = []
    # Per class, (score, is-true-positive) for each box's one label (top-1) and for each of
    # its top-k classes, the way multi-class detectors are scored in PASCAL VOC and COCO
    # (every box carries a score for every class it may be; the API returns the top k).
    per_class: dict[str, list[tuple[float, bool]]] = {c: [] for c in classes}
    per_class_k: dict[str, list[tuple[float, bool]]] = {c: [] for c in classes}
    positives = {c: 0 for c in classes}
    right = matched = total = 0
    seconds = 0.0

    async def run() -> None:
        nonlocal right, matched, total, seconds
        for canvas, labels in canvases:
            truth = [Box(*map(int, b)) for b in canvas.boxes]
            t0 = time.perf_counter()
            answer = await dep.predict(png(canvas.image))
            seconds += time.perf_counter() - t0
            found = [{**o, "score": o["extractor_score"]} for o in answer["objects"]]
            hits = match(found, truth)
            total += len(truth)
            for lab in labels:
                positives[lab] += 1
            for o, j in zip(found, hits, strict=True):
                agnostic.append((o["score"], j >= 0))
                if o["label"] in per_class:
                    ok = j >= 0 and labels[j] == o["label"]
                    per_class[o["label"]].append((o["score"] * o["confidence"], ok))
                for t in o["top_k"]:
                    ok = j >= 0 and labels[j] == t["label"]
                    per_class_k[t["label"]].append((o["score"] * t["confidence"], ok))
                if j >= 0:
                    matched += 1
                    right += o["label"] == labels[j]

    asyncio.run(run())
    present = [c for c in classes if positives[c]]
    aps = [average_precision(per_class[c], positives[c]) for c in present]
    aps_k = [average_precision(per_class_k[c], positives[c]) for c in present]
    return {
        "box AP@0.5": average_precision(agnostic, total),
        "mAP@0.5": float(np.mean(aps)),
        "mAP@0.5 top-k": float(np.mean(aps_k)),
        "recall": matched / max(1, total),
        "label accuracy": right / max(1, matched),
        "ms/canvas": 1000 * seconds / len(canvases),
    }


def true_box_accuracy(dep: Deployment, canvases: list) -> float:
    """Label accuracy when the crops are cut at the true boxes: what a perfect extractor
    would give, so the gap to it is the extractor's localization error."""
    from despina.serving.model import OOD_THRESHOLD

    right = total = 0
    for canvas, labels in canvases:
        crops = [canvas.image[y : y + h, x : x + w] for x, y, w, h in canvas.boxes.astype(int)]
        if not crops:
            continue
        inf = dep.model.infer(dep.model.pipeline.transform(crops))
        for p, z, label in zip(inf.probs, inf.ood_z, labels, strict=True):
            right += z <= OOD_THRESHOLD and dep.model.class_names[int(p.argmax())] == label
            total += 1
    return right / max(1, total)


def prepare_model(args: argparse.Namespace, work: Path) -> Path:
    from despina.jobs.batch import TrainJobConfig, train_model
    from despina.jobs.detector import train_detector_job

    source = f"fashion-mnist:{args.data}?split=train&limit={args.train_images}"
    train = TrainConfig(epochs=args.epochs, zoom_jitter=args.zoom_jitter)
    cfg = TrainJobConfig(image_size=28, train=train, seed=0)
    t0 = time.perf_counter()
    train_model(source, work, cfg)
    print(f"classifier trained in {time.perf_counter() - t0:.0f} s", flush=True)
    bg = work / "backgrounds"
    bg.mkdir()
    for name in TRAIN_PHOTOS:
        cv2.imwrite(str(bg / f"{name}.png"), cv2.cvtColor(photo(name), cv2.COLOR_RGB2BGR))
    t0 = time.perf_counter()
    train_detector_job(source, bg, work / "model", steps=args.detector_steps, seed=0)
    print(f"detector trained in {time.perf_counter() - t0:.0f} s", flush=True)
    return work / "model"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, required=True, help="the Fashion-MNIST IDX folder")
    ap.add_argument("--model", type=Path, help="a model folder with detector/ (skip training)")
    ap.add_argument(
        "--keep", type=Path, help="train into this folder, or reuse what an earlier run left"
    )
    ap.add_argument("--canvases", type=int, default=200)
    ap.add_argument("--train-images", type=int, default=60000)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--detector-steps", type=int, default=2000)
    ap.add_argument(
        "--zoom-jitter",
        type=float,
        default=0.08,
        help="the classifier's training zoom/shift jitter (robustness to crop framing)",
    )
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        if args.model is None and args.keep is not None and (args.keep / "model").is_dir():
            args.model = args.keep / "model"
        if args.keep is not None:
            args.keep.mkdir(parents=True, exist_ok=True)
        model = args.model or prepare_model(args, args.keep or Path(tmp))
        settings = ServingSettings(threads=2)
        deps = {e: Deployment(e, model, e, settings) for e in ("whole", "contours", "learned")}
        classes = deps["whole"].model.class_names
        test_x, test_y = fashion_mnist_arrays(args.data, "test")
        objects = [as_rgb(im) for im in test_x]
        names = [FASHION_MNIST_CLASSES[int(y)] for y in test_y]
        scale = tuple(deps["learned"].extractor.config["scale"])  # type: ignore[attr-defined]
        rng = np.random.default_rng(2026)

        def canvases(backgrounds: list[np.ndarray]) -> list:
            out = []
            for _ in range(args.canvases):
                c = synthesize(objects, backgrounds, rng, 256, (1, 5), scale)
                out.append((c, [names[i] for i in c.objects]))
            return out

        scenes = {
            "photos": canvases([photo(n) for n in EVAL_PHOTOS]),
            "plain": canvases([np.full((256, 256, 3), v, np.uint8) for v in (90, 128, 170, 200)]),
        }
        # The classifier alone, on the same held-out images one at a time.
        pick = rng.choice(len(objects), 2000, replace=False)

        async def single() -> float:
            hits = 0
            for i in pick:
                answer = await deps["whole"].predict(png(objects[i]))
                hits += answer["objects"][0]["label"] == names[i]
            return hits / len(pick)

        single_acc = asyncio.run(single())
        rows = []
        for scene, canv in scenes.items():
            truth = true_box_accuracy(deps["whole"], canv)
            rows.append(
                [
                    scene,
                    "true boxes (ceiling)",
                    1.0,
                    "",
                    "",
                    1.0,
                    truth,
                    round(truth - single_acc, 3),
                    "",
                ]
            )
            for name, dep in deps.items():
                r = evaluate(dep, canv, classes)
                rows.append(
                    [
                        scene,
                        name,
                        r["box AP@0.5"],
                        r["mAP@0.5"],
                        r["mAP@0.5 top-k"],
                        r["recall"],
                        r["label accuracy"],
                        round(r["label accuracy"] - single_acc, 3),
                        round(r["ms/canvas"], 1),
                    ]
                )
        print(f"\nclassifier accuracy on {len(pick)} single held-out images: {single_acc:.3f}")
        print(
            table(
                [
                    "scene",
                    "extractor",
                    "box AP@0.5",
                    "mAP@0.5 top-1",
                    f"mAP@0.5 top-{settings.top_k}",
                    "recall@0.5",
                    "label acc (matched)",
                    "vs single",
                    "ms/canvas",
                ],
                rows,
            )
        )
        face = Deployment("faces", model, "cascade:frontalface", settings).extractor
        astronaut = face.propose(photo("astronaut"))
        coffee = face.propose(photo("coffee"))
        print()
        print(
            table(
                ["image", "faces expected", "faces found", "boxes"],
                [
                    ["astronaut()", 1, len(astronaut), [b.as_list() for b in astronaut]],
                    ["coffee()", 0, len(coffee), [b.as_list() for b in coffee]],
                ],
            )
        )
        for dep in deps.values():
            dep.close()


if __name__ == "__main__":
    main()
