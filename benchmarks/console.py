"""The web console at scale: a store holding a group of 10,000 tasks and an audit of
70,000 samples, served by the real app on loopback; each page's server time, the sample
browser's filter, a page of 100 thumbnails painted in Chromium, and how soon a task's
state change shows on an open page.

The audit's images are Fashion-MNIST's 70,000, written as PNG files; its findings
(samples.csv, summary.json) are drawn at random at an audit's usual rates (5% label
issues, 2% outliers, 1% duplicates, 2% defects) rather than computed, since what is
measured is the console, not the checks. The server runs no scheduler: the 10,000 tasks
stay pending, as a queued group's would.

    python benchmarks/console.py [--tasks 10000] [--samples 70000] [--repeats 40]
    python benchmarks/console.py --cost-only   # the API with and without the console
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import httpx
import numpy as np
import pandas as pd
import uvicorn
from _common import table

from despina.control.models import ClusterSpec, GroupSpec
from despina.control.plane import ControlPlane
from despina.control.settings import ControlSettings
from despina.control.states import TaskState
from despina.data.sources import fashion_mnist_arrays
from despina.security.envelope import file_context, write_sealed
from despina.serving.api import create_app

FMNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "fashion-mnist"


def fashion(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    train = fashion_mnist_arrays(folder, "train")
    test = fashion_mnist_arrays(folder, "test")
    return np.concatenate([train[0], test[0]]), np.concatenate([train[1], test[1]])


def write_audit(home: Path, n: int, rng: np.random.Generator) -> tuple[Path, Path, str]:
    """The images as PNG files in class folders, an audit folder of findings, and the id
    of its middle sample."""
    images, labels = fashion(FMNIST)
    images, labels = images[:n], labels[:n]
    data = home / "fmnist"
    ids, paths = [], []
    for i, (im, y) in enumerate(zip(images, labels, strict=True)):
        folder = data / str(y)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{i:05d}.png"
        cv2.imwrite(str(path), im)
        ids.append(f"{y}/{i:05d}.png")
        paths.append(str(path))
    label = rng.random(n) < 0.05
    outlier = rng.random(n) < 0.02
    duplicate = rng.random(n) < 0.01
    defect = rng.random(n) < 0.02
    given = labels.astype(str)
    predicted = np.where(label, (labels + 1) % 10, labels).astype(str)
    frame = pd.DataFrame({
        "id": ids, "path": paths, "given_label": given, "predicted_label": predicted,
        "label_quality": np.where(label, rng.random(n) * 0.1, 0.5 + rng.random(n) / 2).round(4),
        "is_label_issue": label, "suggested_label": np.where(label, predicted, ""),
        "outlier_score": np.where(outlier, rng.random(n) * 0.05, rng.random(n)).round(4),
        "is_outlier": outlier,
        "duplicate_group": np.where(duplicate, np.arange(n) // 2, np.nan),
        "is_duplicate": duplicate,
        "defects": np.where(defect, "blurry", ""),
        "duplicate_score": np.where(duplicate, rng.random(n) * 0.5, 1.0).round(4),
        "defect_score": np.where(defect, rng.random(n) * 0.2, 0.5 + rng.random(n) / 2).round(4),
        "imbalance_score": 1.0,
    })  # fmt: skip
    audit = home / "audit-out"
    audit.mkdir()
    frame.to_csv(audit / "samples.csv", index=False)
    # A map of every sample (as an audit with map_rows raised to n writes), neighbours
    # drawn at random: its size is what the console's map costs.
    near = rng.integers(0, n, size=(n, 8))
    pd.DataFrame({"id": ids, "x": rng.random(n).round(4), "y": rng.random(n).round(4),
                  "neighbours": [" ".join(map(str, r)) for r in near]}
                 ).to_csv(audit / "map.csv", index=False)  # fmt: skip
    counts = {"samples": n, "label_issues": int(label.sum()), "outliers": int(outlier.sum()),
              "duplicates": int(duplicate.sum()), "defective": int(defect.sum())}  # fmt: skip
    summary = {"counts": counts, "health_score": 0.9, "classes": [str(c) for c in range(10)]}
    (audit / "summary.json").write_text(json.dumps(summary))
    return data, audit, ids[n // 2]


class Server:
    """The app on loopback in a thread; without ``console``, its console routes taken out
    (what the API costs when the console is not there)."""

    def __init__(self, plane: ControlPlane, console: bool = True) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        app = create_app(plane, run_scheduler=False)
        if not console:
            kept = [r for r in app.router.routes if getattr(r, "path", "") != "/"]
            app.router.routes[:] = [r for r in kept if not getattr(r, "path", "").startswith("/ui")]
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{port}"
        while not self.server.started:
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)


def timed(http: httpx.Client, path: str, repeats: int, **kw: object) -> tuple[float, float]:
    """p50 and p95 in ms of GET ``path``, after one warm-up."""
    http.get(path, **kw).raise_for_status()  # type: ignore[arg-type]
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        http.get(path, **kw).raise_for_status()  # type: ignore[arg-type]
        times.append((time.perf_counter() - t0) * 1000)
    return float(np.percentile(times, 50)), float(np.percentile(times, 95))


def browser_figures(url: str, token: str, plane: ControlPlane, repeats: int) -> dict[str, float]:
    from playwright.sync_api import sync_playwright

    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        sys.exit("no Chromium: apt-get install -y chromium")
    out: dict[str, float] = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=path, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(f"{url}/ui/login")
        page.get_by_role("form", name="Sign in with a token").get_by_label("Token").fill(token)
        page.get_by_role("button", name="Sign in with a token").click()
        page.wait_for_url(f"{url}/ui/")
        first, every = [], []
        visible = (
            "() => { const im = [...document.querySelectorAll('tr.sample img')]"
            ".filter(i => i.getBoundingClientRect().top < innerHeight);"
            " return im.length > 0 && im.every(i => i.complete && i.naturalWidth > 0); }"
        )
        loaded = (
            "() => { const im = [...document.querySelectorAll('tr.sample img')];"
            " return im.length === 100 && im.every(i => i.complete && i.naturalWidth > 0); }"
        )
        for i in range(5):
            low = 0.01 * i  # a different page of findings each time: nothing cached
            t0 = time.perf_counter()
            page.goto(f"{url}/ui/audits/fm?kind=all&per=100&low={low}")
            page.wait_for_function(visible)
            first.append(time.perf_counter() - t0)
            # The thumbnails load lazily as they scroll into view: scroll through the page.
            # Each step waits two frames: lazy images are found at rendering, and a scroll
            # faster than that passes rows by without loading them.
            frames = "new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))"
            for y in range(0, page.evaluate("document.body.scrollHeight"), 600):
                page.evaluate(f"window.scrollTo(0, {y})")
                page.evaluate(frames)
            page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
            page.wait_for_function(loaded)
            every.append(time.perf_counter() - t0)
        out["first screen of thumbnails painted, s (median of 5)"] = float(np.median(first))
        out["all 100 thumbnails loaded, scrolled through, s (median of 5)"] = float(
            np.median(every)
        )
        page.goto(f"{url}/ui/groups/one")
        page.locator("tr[id^=task-]").first.wait_for()
        tasks = plane.list_tasks(group="one")
        delays = []
        for task in tasks[:repeats]:
            t0 = time.perf_counter()
            plane.store.transition(task.id, TaskState.RUNNING)
            page.locator(f"#task-{task.id} .RUNNING").wait_for(timeout=10_000)
            delays.append(time.perf_counter() - t0)
        out["task state change on the page, s (p95)"] = float(np.percentile(delays, 95))
        browser.close()
    return out


def api_cost(plane: ControlPlane, token: str, rounds: int = 10, calls: int = 200) -> list[list]:
    """API calls per second and p50 with the console's routes and without them, the two
    servers taking turns (``rounds`` of ``calls`` each) so drift hits both alike."""
    servers = {"with the console": Server(plane), "without it": Server(plane, console=False)}
    paths = ("/health", "/v1/groups", "/v1/groups/one")
    times: dict[tuple[str, str], list[float]] = {}
    headers = {"Authorization": f"Bearer {token}"}
    clients = {k: httpx.Client(base_url=v.url, headers=headers, timeout=60)
               for k, v in servers.items()}  # fmt: skip
    for _ in range(rounds):
        for path in paths:
            for name, http in clients.items():
                http.get(path).raise_for_status()
                for _ in range(calls // len(paths)):
                    t0 = time.perf_counter()
                    http.get(path).raise_for_status()
                    times.setdefault((path, name), []).append(time.perf_counter() - t0)
    rows = []
    for path in paths:
        got = {n: np.array(times[(path, n)]) for n in servers}
        rate = {n: len(t) / t.sum() for n, t in got.items()}
        rows.append([path, *(round(rate[n]) for n in servers),
                     round(rate["with the console"] / rate["without it"], 3),
                     *(round(float(np.median(got[n])) * 1000, 2) for n in servers)])  # fmt: skip
    for http in clients.values():
        http.close()
    for server in servers.values():
        server.stop()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--tasks", type=int, default=10_000)
    ap.add_argument("--samples", type=int, default=70_000)
    ap.add_argument("--repeats", type=int, default=40)
    ap.add_argument("--cost-only", action="store_true",
                    help="only the console's cost to the API, on a small store")  # fmt: skip
    args = ap.parse_args()
    if args.cost_only:
        args.tasks, args.samples = 100, 0
    rng = np.random.default_rng(0)
    tmp = Path(tempfile.mkdtemp(prefix="console-bench-"))
    try:
        home = tmp / "home"
        home.mkdir()
        settings = ControlSettings(home=home, database_url=f"sqlite:///{home / 'despina.db'}",
                                   allowed_roots=(tmp.resolve(),))  # fmt: skip
        plane = ControlPlane(settings)
        plane.create_cluster(ClusterSpec(name="c", workers=2))
        script = tmp / "noop.py"
        script.write_text("def process(batch, context):\n    return []\n")
        many = tmp / "many"
        many.mkdir()
        for i in range(args.tasks):
            (many / f"{i:05d}.txt").write_text("x")
        few = tmp / "few"
        few.mkdir()
        for i in range(args.repeats):
            (few / f"{i:03d}.txt").write_text("x")
        t0 = time.perf_counter()
        for name, source, parts in (("many", many, args.tasks), ("one", few, args.repeats)):
            plane.create_group(GroupSpec(name=name, cluster="c", source=str(source),
                                         script=str(script), partitions=parts))  # fmt: skip
            plane.start_group(name)
        print(f"queued {args.tasks + args.repeats} tasks in {time.perf_counter() - t0:.1f}s",
              file=sys.stderr)  # fmt: skip
        token = plane.store.bootstrap_admin() or plane.store.issue_token("admin")[0]
        cost_head = ["API call", "calls/s with the console", "without it", "ratio",
                     "p50 ms with", "p50 ms without"]  # fmt: skip
        if args.cost_only:
            print("## The console's cost to the API (no browser connected)\n")
            print(table(cost_head, api_cost(plane, token)))
            return
        data, folder, one_id = write_audit(tmp, args.samples, rng)
        plane.create_group(GroupSpec(name="fm", cluster="c", source=str(data), job="audit"))
        (task,) = plane.start_group("fm")
        plane.store.transition(task.id, TaskState.RUNNING)
        for path in folder.iterdir():  # sealed, as a real audit task's outputs are
            rel = path.relative_to(folder.parent)
            write_sealed(path, path.read_bytes(), plane.keyring, file_context(rel))
        plane.store.transition(task.id, TaskState.SUCCEEDED, outputs=[str(folder)])
        print(f"audit of {args.samples} written", file=sys.stderr)

        server = Server(plane)
        any_task = plane.list_tasks(group="many", limit=1)[0].id
        pages = [
            ("overview", "/ui/"),
            (f"group of {args.tasks:,} tasks", "/ui/groups/many"),
            ("its pending tasks", "/ui/groups/many?state=PENDING"),
            ("task", f"/ui/tasks/{any_task}"),
            ("audits", "/ui/audits"),
            ("sample browser, every finding", "/ui/audits/fm"),
            ("sample browser, every sample", "/ui/audits/fm?kind=any"),
            (
                "a box on the map (about 1% of it)",
                "/ui/audits/fm?kind=any&x0=0.4&x1=0.5&y0=0.4&y1=0.5",
            ),
            (f"the map's {args.samples:,} points (JSON)", "/ui/audits/fm/map.json"),
            ("sample, with its neighbours", f"/ui/audits/fm/sample?id={one_id}"),
        ]
        rows = []
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=server.url, headers=headers, timeout=60) as http:
            for title, path in pages:
                p50, p95 = timed(http, path, args.repeats)
                rows.append([title, round(p50, 1), round(p95, 1), "≤ 150"])
            fragment = {"HX-Request": "true", "HX-Target": "samples"}
            filters = [f"/ui/audits/fm?kind={k}&label={c}&low=0&high={h}"
                       for k in ("label", "outlier", "defect") for c in ("3", "")
                       for h in ("0.5", "1")]  # fmt: skip
            times = []
            for path in filters:
                for _ in range(max(1, args.repeats // len(filters))):
                    t0 = time.perf_counter()
                    http.get(path, headers=fragment).raise_for_status()
                    times.append((time.perf_counter() - t0) * 1000)
            rows.append(["filter (12 combinations)", round(float(np.percentile(times, 50)), 1),
                         round(float(np.percentile(times, 95)), 1), "≤ 300"])  # fmt: skip
        print(f"## The console at scale ({args.tasks:,} tasks, {args.samples:,} samples)")
        print()
        print(table(["page", "p50 ms", "p95 ms", "target ms"], rows))
        figures = browser_figures(server.url, token, plane, args.repeats)
        print()
        print(table(["in Chromium", "measured", "target"],
                    [[k, round(v, 3), "≤ 1.5" if "thumbnails" in k else "≤ 1"]
                     for k, v in figures.items()]))  # fmt: skip
        server.stop()
        print("\n## The console's cost to the API (no browser connected)\n")
        print(table(cost_head, api_cost(plane, token)))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
