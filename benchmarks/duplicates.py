"""Near-duplicate benchmark: 5% of digits copied back with one change each.

Digits exported as 32x32 PNGs; 5% of them are copied back in with one change per copy
(sub-pixel shift, 1-px shift, noise, brightness, JPEG re-encode, 50% resize, 3% crop).
Despina's audit (duplicate check, with CNN embeddings from cross-validation), cleanlab
Datalab's ``near_duplicate`` check on the same embeddings and cleanvision's exact and
near duplicates at their defaults: recall per kind, precision of the flagged rows, and
the share of an untouched copy of the dataset each flags.

    pip install -e '.[bench]' torch==2.13.0 && python benchmarks/duplicates.py
"""

from __future__ import annotations

import sys
import tempfile
import warnings
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from _common import table

import despina
from despina.core.config import AuditConfig
from despina.data.sources import digits_arrays

KINDS = ("sub-pixel shift", "1-px shift", "noise", "brightness", "jpeg", "50% resize", "3% crop")
SIZE = 32


def change(img: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    if kind in ("sub-pixel shift", "1-px shift"):
        d = 0.5 if kind == "sub-pixel shift" else 1.0
        m = np.array([[1, 0, d], [0, 1, 0]], dtype=np.float32)
        return cv2.warpAffine(img, m, (SIZE, SIZE), borderMode=cv2.BORDER_REPLICATE)
    if kind == "noise":
        return np.clip(img + rng.normal(0, 5, img.shape), 0, 255).astype(np.uint8)
    if kind == "brightness":
        return np.clip(img.astype(np.int16) - 30, 0, 255).astype(np.uint8)
    if kind == "jpeg":
        _, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 75])
        return cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)
    if kind == "50% resize":
        return cv2.resize(img, (SIZE // 2, SIZE // 2), interpolation=cv2.INTER_AREA)
    if kind == "3% crop":
        c = max(1, round(SIZE * 0.03))
        return img[c:-c, c:-c]
    raise ValueError(kind)


def build(folder: Path, with_copies: bool, seed: int = 0) -> list[tuple[str, str, str]]:
    images, y = digits_arrays()
    rng = np.random.default_rng(seed)
    big = [cv2.resize(im, (SIZE, SIZE), interpolation=cv2.INTER_LINEAR) for im in images]
    for i, (im, label) in enumerate(zip(big, y, strict=True)):
        (folder / str(label)).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / f"{label}/{i:04d}.png"), im)
    pairs = []
    if with_copies:
        n = round(0.05 * len(big))
        for j, i in enumerate(rng.choice(len(big), n, replace=False)):
            kind = KINDS[j % len(KINDS)]
            copy = f"{y[i]}/copy_{i:04d}.png"
            cv2.imwrite(str(folder / copy), change(big[i], kind, rng))
            pairs.append((f"{y[i]}/{i:04d}.png", copy, kind))
    return pairs


def despina_groups(folder: Path, out: Path) -> tuple[dict[str, int], np.ndarray, list[str]]:
    cfg = AuditConfig(seed=0, workers=2, checks=("duplicate", "outlier"))
    report = despina.audit(folder, out, cfg)
    df = report.samples
    group = {i: int(g) for i, g in zip(df["id"], df["duplicate_group"], strict=True) if pd.notna(g)}
    assert report.embeddings is not None
    return group, report.embeddings, list(df["id"])


def datalab_sets(emb: np.ndarray, ids: list[str]) -> dict[str, set[str]]:
    from cleanlab import Datalab

    lab = Datalab(data={"id": ids}, verbosity=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lab.find_issues(features=emb, issue_types={"near_duplicate": {}})
    issues = lab.get_issues("near_duplicate")
    return {
        ids[i]: {ids[j] for j in s}
        for i, s in enumerate(issues["near_duplicate_sets"])
        if bool(issues["is_near_duplicate_issue"].iloc[i])
    }


def cleanvision_sets(folder: Path) -> dict[str, set[str]]:
    from cleanvision import Imagelab

    lab = Imagelab(data_path=str(folder))
    lab.find_issues({"exact_duplicates": {}, "near_duplicates": {}})
    out: dict[str, set[str]] = {}
    for key in ("exact_duplicates", "near_duplicates"):
        for s in lab.info[key]["sets"]:
            rel = {Path(p).relative_to(folder).as_posix() for p in s}
            for p in rel:
                out.setdefault(p, set()).update(rel - {p})
    return out


def main() -> None:
    rows: list[list[object]] = []
    with tempfile.TemporaryDirectory() as tmp:
        data, clean = Path(tmp) / "data", Path(tmp) / "clean"
        pairs = build(data, True)
        build(clean, False)
        group, emb, ids = despina_groups(data, Path(tmp) / "out")
        c_group, c_emb, c_ids = despina_groups(clean, Path(tmp) / "out2")
        dl = datalab_sets(emb, ids)
        dl_clean = datalab_sets(c_emb, c_ids)
        cv = cleanvision_sets(data)
        cv_clean = cleanvision_sets(clean)
    injected = {x for a, b, _ in pairs for x in (a, b)}

    def found(ps: list[tuple[str, str]]) -> list[float]:
        return [
            float(np.mean([a in group and group[a] == group.get(b) for a, b in ps])),
            float(np.mean([a in dl.get(b, set()) or b in dl.get(a, set()) for a, b in ps])),
            float(np.mean([a in cv.get(b, set()) for a, b in ps])),
        ]

    for kind in KINDS:
        ps = [(a, b) for a, b, k in pairs if k == kind]
        rows.append([kind, len(ps), *found(ps)])
    all_p = [(a, b) for a, b, _ in pairs]
    rows.append(["all kinds (recall)", len(all_p), *found(all_p)])

    def precision(members: set[str]) -> float:
        return len(members & injected) / len(members) if members else 1.0

    d_members = {i for i in group}
    rows.append(
        [
            "precision (rows in a set)",
            "",
            precision(d_members),
            precision(set(dl)),
            precision(set(cv)),
        ]
    )
    n_clean = len(c_ids)
    rows.append(
        [
            "untouched dataset: rows flagged",
            n_clean,
            len(c_group) / n_clean,
            len(dl_clean) / n_clean,
            len(cv_clean) / n_clean,
        ]
    )
    print(f"## Near-duplicates (digits at {SIZE}x{SIZE}; {len(pairs)} copies, one change each)")
    print()
    print(table(["kind", "copies", "despina", "datalab near_duplicate", "cleanvision"], rows))


if __name__ == "__main__":
    main()
