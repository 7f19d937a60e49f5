"""Shared fixtures: small real image datasets written to temporary folders."""

from __future__ import annotations

import os
import zlib
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from despina.data.sources import digits_arrays

pytest_plugins = ["tests.control.fixtures", "tests.serving.fixtures"]

# Ray 2.60 turns its token authentication on and writes a token file under the home
# directory on first init; the tests' throwaway local heads opt out (ENGINES.md).
os.environ.setdefault("RAY_AUTH_MODE", "disabled")


def _find_shared_fashion() -> Path:
    """shared/data/fashion-mnist beside the checkout (or beside any folder above it)."""
    for parent in Path(__file__).resolve().parents:
        candidate = parent / "shared" / "data" / "fashion-mnist"
        if candidate.is_dir():
            return candidate
    return Path("shared/data/fashion-mnist")


SHARED_FASHION = _find_shared_fashion()


def write_digits(folder: Path, per_class: int = 20, classes: int = 10, size: int = 8) -> Path:
    """A class-folder dataset of real scikit-learn digits (``per_class`` images per class)."""
    images, labels = digits_arrays()
    for c in range(classes):
        idx = np.flatnonzero(labels == c)[:per_class]
        (folder / str(c)).mkdir(parents=True, exist_ok=True)
        for i in idx:
            img = images[i]
            if size != 8:
                img = cv2.resize(img, (size, size), interpolation=cv2.INTER_LINEAR)
            cv2.imwrite(str(folder / str(c) / f"{i:04d}.png"), img)
    return folder


@pytest.fixture
def digits_folder(tmp_path: Path) -> Path:
    return write_digits(tmp_path / "digits")


@pytest.fixture
def make_digits(tmp_path: Path) -> Callable[..., Path]:
    def make(name: str = "ds", **kw: int) -> Path:
        return write_digits(tmp_path / name, **kw)

    return make


def huge_png(path: Path, side: int = 20000) -> Path:
    """A valid, tiny-on-disk PNG of side x side black pixels (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return len(data).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")

    ihdr = side.to_bytes(4, "big") * 2 + bytes([8, 0, 0, 0, 0])  # 8-bit grayscale
    comp = zlib.compressobj(9)
    row = b"\x00" * (side + 1)
    parts = [comp.compress(row) for _ in range(side)]
    parts.append(comp.flush())
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"".join(parts))
    path.write_bytes(png + chunk(b"IEND", b""))
    return path


@pytest.fixture(scope="session")
def bomb_png(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return huge_png(tmp_path_factory.mktemp("bomb") / "huge.png")


def tree(folder: Path) -> set[str]:
    """Every path under ``folder`` (to prove nothing was written outside --out)."""
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*")}


# ---- PostgreSQL and Ray halves of the contract suites ---------------------------------
#: Parameter ids that need a service or an optional package, and the marker each gets.
BACKEND_MARKERS = {"postgres": "postgres", "ray": "ray"}


#: The modules that take longest (``--durations`` and a JUnit report of the suite), run
#: first so that the two test processes of ``make test`` end together: pytest-xdist would
#: order modules by their number of tests, which puts these few-test ones last. Those that
#: start Ray take turns on a lock, so they are spread out.
HEAVIEST_FIRST = (
    "tests/jobs/test_optimize.py",
    "tests/jobs/test_demo.py",
    "tests/console/test_console.py",
    "tests/models/test_keras_model.py",
    "tests/control/test_staged_audit.py",  # Ray
    "tests/serving/test_access.py",
    "tests/control/test_faults.py",
    "tests/models/test_frozen_model.py",
    "tests/control/test_two_node_ray.py",  # Ray
    "tests/control/test_optimize_group.py",
    "tests/contracts/test_executor_contract.py",  # Ray
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The heaviest modules first (with ``--no-loadscope-reorder``, the order xdist
    deals them in); mark the PostgreSQL and Ray halves, so ``-m 'not ray'`` selects and
    the summary below can count what was skipped."""
    rank = {module: i for i, module in enumerate(HEAVIEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        for value in params.values():
            if isinstance(value, str) and value in BACKEND_MARKERS:
                item.add_marker(BACKEND_MARKERS[value])
        if "ray" in item.nodeid.lower() and "ray" not in item.keywords:
            item.add_marker("ray")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say loudly when the PostgreSQL or Ray halves did not run, and why."""
    skipped = terminalreporter.stats.get("skipped", [])
    for marker in sorted(set(BACKEND_MARKERS.values())):
        mine = [r for r in skipped if marker in getattr(r, "keywords", {})]
        if mine:
            reason = str(mine[0].longrepr[-1]) if isinstance(mine[0].longrepr, tuple) else ""
            terminalreporter.write_sep(
                "!", f"{len(mine)} {marker} test(s) SKIPPED: {reason}", red=True, bold=True
            )
    if os.environ.get("DESPINA_REQUIRE_SERVICES") == "1" and any(
        any(m in getattr(r, "keywords", {}) for m in BACKEND_MARKERS.values()) for r in skipped
    ):
        terminalreporter.write_sep("!", "DESPINA_REQUIRE_SERVICES=1: these must run", red=True)
        terminalreporter._session.exitstatus = 1  # type: ignore[attr-defined]
