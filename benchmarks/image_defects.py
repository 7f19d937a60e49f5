"""Image-defect benchmark: Despina's defect and duplicate checks against cleanvision's Imagelab.

A folder of real colour photo tiles (64x64, non-overlapping, from scikit-image's and
scikit-learn's bundled photographs) gets defects injected into disjoint tiles with a
fixed seed: blur (strong and mild), dark, washed-out, blown highlights, grayscale saved as
RGB, near-blank with slight noise, exact and near duplicates. Both tools see the same
files; per-defect recall and the share of clean tiles flagged, pooled over several seeds
(a seed injects 9 tiles of each kind, too few for one seed's figure to mean much), and
images per second on the first seed's folder with the left-out tiles added back, every
tile of the photos (each tool run once to warm up, then the median of three runs).

The pool holds ordinary images only: tiles that are patches of night sky, shadow, haze or
plain wall, and tiles that already have what an injection gives (see ``screen``), are
dark, washed-out, clipped or blank images in their own right, so counting them as clean
would charge every tool with false alarms that are not.

A defect is injected only where it happens: a blur that leaves a tile within 40 dB PSNR
of itself (a flat patch of sky) is not a blurred image, so such a tile stays clean and
the next one in the seeded order takes the blur; blown highlights raise the exposure
until a quarter of the tile clips to white, whatever its brightness (a fixed gain left
dark tiles merely brighter, with nothing clipped).

    pip install -e '.[bench]' torch==2.13.0
    python benchmarks/image_defects.py [--sheet sheet.jpg]

``--sheet`` draws the tiles left out of the pool and the clean tiles Despina flags at
the first seed, one row per reason, to see what they are.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import table

from despina.audit.base import AuditContext
from despina.audit.checks import DefectCheck, DuplicateCheck
from despina.audit.image_stats import ImageStats
from despina.audit.runner import run_checks
from despina.data.sources import load_folder
from despina.jobs.scan import scan

TILE = 64


def screen(tile: np.ndarray) -> str | None:
    """Why a tile is not an ordinary clean image (None when it is).

    A patch of night sky or shadow (mean luminance under 40 of 255), of bright haze or
    sky (over 215), or nearly flat (luminance spread under 12) is a dark, washed-out or
    blank image by any tool's account. So is a tile that already has what an injection
    below gives a tile: its brightest 5% under 64 (darkening to a quarter leaves every
    pixel under 64), its darkest 5% at 160 or over (washing out lifts every pixel to 160
    or over), or a tenth of it at 250 or over (blown highlights clip a quarter). Counted
    as clean, such tiles would charge a tool that finds them with false alarms that are
    not; they are left out of the pool, and ``--sheet`` draws them."""
    lum = cv2.cvtColor(tile, cv2.COLOR_RGB2GRAY)
    mean, spread = float(lum.mean()), float(lum.std())
    if mean < 40:
        return "dim"
    if mean > 215:
        return "light"
    if spread < 12:
        return "flat"
    p05, p95 = np.percentile(lum, [5, 95])
    if p95 < 64:
        return "dark"
    if p05 >= 160:
        return "hazy"
    return "clipped" if float((lum >= 250).mean()) >= 0.1 else None


def photo_tiles() -> tuple[list[np.ndarray], dict[str, list[np.ndarray]]]:
    """Non-overlapping tiles of the bundled colour photographs: the ordinary ones, and
    the others by why :func:`screen` left them out."""
    import skimage.data as d
    from sklearn.datasets import load_sample_image

    photos = [
        d.astronaut(),
        d.coffee(),
        d.chelsea(),
        d.rocket(),
        d.stereo_motorcycle()[0],
        load_sample_image("china.jpg"),
        load_sample_image("flower.jpg"),
    ]
    tiles: list[np.ndarray] = []
    left_out: dict[str, list[np.ndarray]] = {}
    for p in photos:
        for y in range(0, p.shape[0] - TILE + 1, TILE):
            for x in range(0, p.shape[1] - TILE + 1, TILE):
                t = np.ascontiguousarray(p[y : y + TILE, x : x + TILE])
                why = screen(t)
                if why is None:
                    tiles.append(t)
                else:
                    left_out.setdefault(why, []).append(t)
    return tiles, left_out


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean())
    return 10 * np.log10(255.0**2 / max(mse, 1e-12))


def blow_highlights(t: np.ndarray) -> np.ndarray:
    """Overexpose until a quarter of the pixels clip to white (in every channel)."""
    gain = 255.0 / max(float(np.percentile(t.min(axis=2), 75)), 1.0)
    return np.clip(t.astype(np.float32) * max(gain, 1.2) + 20, 0, 255).astype(np.uint8)


def inject(
    tiles: list[np.ndarray], seed: int = 0
) -> tuple[list[np.ndarray], dict[str, list[int]], int, set[int]]:
    """The tiles with defects injected, the tiles of each kind, how many tiles a blur
    would not have changed, and the clean tiles that were copied (their copies' sets
    rightly hold them)."""
    rng = np.random.default_rng(seed)
    out = [t.copy() for t in tiles]
    order = iter(rng.permutation(len(tiles)))
    per = max(5, len(tiles) // 30)
    truth: dict[str, list[int]] = {}
    skipped = 0  # tiles a blur would not change: they stay clean

    def take(kind: str, fn, visible: bool = False) -> None:  # type: ignore[no-untyped-def]
        nonlocal skipped
        truth[kind] = []
        while len(truth[kind]) < per:
            i = int(next(order))
            changed = fn(out[i])
            if visible and psnr(out[i], changed) >= 40.0:
                skipped += 1
                continue
            out[i] = changed
            truth[kind].append(i)

    take("blur", lambda t: cv2.GaussianBlur(t, (0, 0), 2.0), visible=True)
    take("mild blur", lambda t: cv2.GaussianBlur(t, (0, 0), 1.0), visible=True)
    take("dark", lambda t: (t * 0.25).astype(np.uint8))
    take("washed out", lambda t: (t * 0.35 + 160).astype(np.uint8))
    take("blown highlights", blow_highlights)
    take("grayscale", lambda t: np.repeat(cv2.cvtColor(t, cv2.COLOR_RGB2GRAY)[:, :, None], 3, 2))
    take(
        "near-blank",
        lambda t: np.clip(
            np.full_like(t, int(rng.integers(60, 200)), dtype=np.float32)
            + rng.normal(0, 2, t.shape),
            0,
            255,
        ).astype(np.uint8),
    )
    clean = sorted(set(range(len(tiles))) - {i for v in truth.values() for i in v})
    # Duplicates are added as new files (exact and 1-px shifted copies of clean tiles).
    truth["exact duplicate"], truth["near duplicate"] = [], []
    sources: set[int] = set()
    for kind in ("exact duplicate", "near duplicate"):
        for _ in range(per):
            src = clean[int(rng.integers(len(clean)))]
            sources.add(src)
            copy = out[src].copy()
            if kind == "near duplicate":
                m = np.array([[1, 0, 1], [0, 1, 0]], dtype=np.float32)
                copy = cv2.warpAffine(copy, m, (TILE, TILE), borderMode=cv2.BORDER_REFLECT)
            out.append(copy)
            truth[kind].append(len(out) - 1)
    return out, truth, skipped, sources


def write(folder: Path, images: list[np.ndarray]) -> list[str]:
    (folder / "photos").mkdir(parents=True)
    names = []
    for i, im in enumerate(images):
        name = f"photos/{i:05d}.png"
        cv2.imwrite(str(folder / name), cv2.cvtColor(im, cv2.COLOR_RGB2BGR))
        names.append(name)
    return names


def run_despina(folder: Path) -> tuple[list[set[str]], float]:
    t0 = time.perf_counter()
    ds = load_folder(folder)
    sc = scan(ds.records, 32)
    valid = np.array([f is not None for f in sc.features])
    ctx = AuditContext(
        ids=[r.id for r in ds.records],
        given_labels=ds.labels,
        class_names=ds.class_names,
        valid=valid,
        load_defects=sc.load_defects,
        image_stats=ImageStats.from_features(sc.features),
    )
    out = run_checks(ctx, [DefectCheck(), DuplicateCheck()])
    seconds = time.perf_counter() - t0
    d, u = out["defect"].result, out["duplicate"].result
    assert d is not None and u is not None
    found = [set(x) for x in d.details["defects"]]
    for i in range(ctx.n):
        if u.details["group_of"][i] >= 0:
            found[i].add("duplicate")
    return found, seconds


def run_cleanvision(folder: Path, n: int) -> tuple[list[set[str]], float]:
    from cleanvision import Imagelab

    t0 = time.perf_counter()
    lab = Imagelab(data_path=str(folder / "photos"))
    lab.find_issues()
    seconds = time.perf_counter() - t0
    issues = lab.issues
    cols = [c for c in issues.columns if c.startswith("is_") and c.endswith("_issue")]
    found: list[set[str]] = [set() for _ in range(n)]
    for path, row in issues.iterrows():
        i = int(Path(str(path)).stem)
        found[i] = {c[3:-6] for c in cols if row[c]}
    return found, seconds


# Which reported issue counts as finding each injected defect, per tool.
EXPECT = {
    "blur": ({"blurry"}, {"blurry"}),
    "mild blur": ({"blurry"}, {"blurry"}),
    "dark": ({"dark"}, {"dark"}),
    "washed out": ({"overexposed", "low_information"}, {"light", "low_information"}),
    "blown highlights": ({"overexposed"}, {"light"}),
    "grayscale": ({"grayscale"}, {"grayscale"}),
    "near-blank": ({"low_information"}, {"low_information"}),
    "exact duplicate": ({"duplicate"}, {"exact_duplicates"}),
    "near duplicate": ({"duplicate"}, {"near_duplicates", "exact_duplicates"}),
}


def contact_sheet(path: Path, rows: dict[str, list[np.ndarray]]) -> None:
    """One row of tiles per name, the name on the left (PNG, or JPEG by the suffix)."""
    label_w, side, per_row = 190, TILE, 16
    lines = []
    for name, tiles in rows.items():
        for start in range(0, max(1, len(tiles)), per_row):
            line = np.full((side, label_w + per_row * side, 3), 255, np.uint8)
            if start == 0:
                cv2.putText(line, name, (4, side // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0))
            for k, t in enumerate(tiles[start : start + per_row]):
                tile = cv2.resize(t, (side, side), interpolation=cv2.INTER_NEAREST)
                line[:, label_w + k * side : label_w + (k + 1) * side] = tile
            lines.append(line)
    sheet = cv2.cvtColor(np.vstack(lines), cv2.COLOR_RGB2BGR)
    cv2.imwrite(str(path), sheet, [cv2.IMWRITE_JPEG_QUALITY, 90])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--sheet", type=Path, help="draw the tiles left out and the clean tiles Despina flags"
    )
    parser.add_argument(
        "--seeds", default="0,1,2,3,4", help="comma-separated seeds: which tiles get which defect"
    )
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    tiles, left_out = photo_tiles()
    hits: dict[str, list[tuple[bool, bool]]] = {}
    clean_hits: list[tuple[bool, bool]] = []
    by_defect: dict[str, list[np.ndarray]] = {}
    skipped = 0
    for k, seed in enumerate(seeds):
        images, truth, skip, sources = inject(tiles, seed)
        skipped += skip
        touched = {i for v in truth.values() for i in v}
        with tempfile.TemporaryDirectory() as tmp:
            write(Path(tmp), images)
            d_found, _ = run_despina(Path(tmp))
            c_found, _ = run_cleanvision(Path(tmp), len(images))
        if k == 0:  # speed: this folder with the left-out tiles, every tile of the photos
            speed_set = images + [t for v in left_out.values() for t in v]
            with tempfile.TemporaryDirectory() as tmp:
                write(Path(tmp), speed_set)
                run_despina(Path(tmp))  # warm-up: imports, caches
                run_cleanvision(Path(tmp), len(speed_set))
                d_s = float(np.median([run_despina(Path(tmp))[1] for _ in range(3)]))
                c_s = float(
                    np.median([run_cleanvision(Path(tmp), len(speed_set))[1] for _ in range(3)])
                )
        for kind, idx in truth.items():
            exp_d, exp_c = EXPECT[kind]
            hits.setdefault(kind, []).extend(
                (bool(d_found[i] & exp_d), bool(c_found[i] & exp_c)) for i in idx
            )
        # Copied tiles are legitimately in their copies' duplicate sets; leave them out.
        base = [i for i in range(len(tiles)) if i not in touched and i not in sources]
        clean_hits.extend((bool(d_found[i]), bool(c_found[i])) for i in base)
        if k == 0:
            for i in base:
                for name in sorted(d_found[i]):
                    by_defect.setdefault(name, []).append(images[i])
    rows = [[kind, len(h), *np.mean(np.array(h, dtype=float), axis=0)] for kind, h in hits.items()]
    fp = np.mean(np.array(clean_hits, dtype=float), axis=0)
    rows.append(["clean tiles flagged (lower is better)", len(clean_hits), *fp])
    n_left = sum(len(v) for v in left_out.values())
    print(f"## Image defects ({len(tiles)} real photo tiles, {TILE}x{TILE}, seeds {args.seeds})")
    print()
    print(
        f"Left out of the pool as not ordinary images: {n_left} tiles "
        f"({', '.join(f'{len(v)} {k}' for k, v in left_out.items())}). Over all seeds, "
        f"{skipped} tiles a blur would not visibly change (PSNR >= 40 dB) were left clean."
    )
    counts = {k: len(v) for k, v in sorted(by_defect.items())}
    print(f"Despina's flags on clean tiles at seed {seeds[0]}, by defect: {counts}")
    if args.sheet:
        flagged = {f"flagged: {k}": v for k, v in sorted(by_defect.items())}
        contact_sheet(args.sheet, {**{f"left out: {k}": v for k, v in left_out.items()}, **flagged})
        print(f"Those tiles: {args.sheet}")
    print()
    print(table(["injected", "count", "despina recall", "cleanvision recall"], rows))
    print()
    print(
        table(
            ["tool", "seconds", "images/s", "ratio"],
            [
                ["despina (decode + defect + duplicate)", d_s, len(speed_set) / d_s, c_s / d_s],
                ["cleanvision Imagelab.find_issues", c_s, len(speed_set) / c_s, 1.0],
            ],
        )
    )


if __name__ == "__main__":
    main()
