"""The console's audit pages: every audit job the store knows, and a browser of all its
flagged samples (not a sample of them), filtered by finding, class and score, sorted by
score and paged, with each image shown from the audited source."""

from __future__ import annotations

import io
import json
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

import numpy as np
import pandas as pd
from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from despina.audit.embedding_map import MAP_FILE
from despina.audit.report import confusion_svg, confusions
from despina.control.models import Review, TaskGroup
from despina.control.plane import ControlPlane
from despina.control.states import TaskState
from despina.core.errors import (
    ConfigError,
    DespinaError,
    NotFoundError,
    PathEscapeError,
    StateError,
)
from despina.data.corrections import ACTIONS
from despina.serving.console_pages import fragment, may_operate, page, principal_of

#: Each kind of finding: the flag column, and the score that ranks it (low = worst).
KINDS = {
    "label": ("is_label_issue", "label_quality"),
    "outlier": ("is_outlier", "outlier_score"),
    "duplicate": ("is_duplicate", "duplicate_score"),
    "defect": ("defects", "defect_score"),
}
PAGE_SIZE = 50
#: The most samples one review of a selection changes.
BULK = 5000
LABELS = ("given_label", "predicted_label", "suggested_label")
IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg",
               ".gif": "image/gif", ".bmp": "image/bmp", ".webp": "image/webp"}  # fmt: skip


@dataclass(frozen=True)
class Audit:
    """A finished audit as the console shows it: its group, folder, summary and samples
    (with each sample id's row)."""

    group: TaskGroup
    folder: Path
    summary: dict[str, Any]
    samples: pd.DataFrame
    positions: dict[str, int]
    #: map.csv's x, y and neighbours, row for row with ``samples``; None if not written.
    map: pd.DataFrame | None = None

    @property
    def classes(self) -> list[str]:
        return [str(c) for c in self.summary.get("classes", [])]

    def row(self, sample: str) -> dict[str, Any]:
        """The sample's row; NotFoundError for an id the audit does not have."""
        if sample not in self.positions:
            raise NotFoundError(f"the audit {self.group.name} has no sample {sample!r}")
        return {str(k): v for k, v in self.samples.iloc[self.positions[sample]].items()}

    def neighbours(self, sample: str) -> list[dict[str, Any]]:
        """The rows of the sample's nearest neighbours, nearest first."""
        if self.map is None:
            return []
        near = str(self.map["neighbours"].iloc[self.positions[sample]])
        return [{str(k): v for k, v in self.samples.iloc[int(i)].items()} for i in near.split()]


def _finished(plane: ControlPlane, name: str) -> tuple[TaskGroup, Path]:
    """The group ``name`` and the folder of its finished audit; NotFoundError/StateError
    saying why not."""
    group = plane.get_group(name)
    if group.job != "audit":
        raise NotFoundError(f"group {name} is a {group.job or 'script'} group, not an audit")
    tasks = plane.list_tasks(group=name)
    final = max(tasks, key=lambda t: (t.stage, t.partition), default=None)
    if final is None or final.state is not TaskState.SUCCEEDED or not final.outputs:
        raise StateError(f"the audit {name} has not finished: see /ui/groups/{name}")
    return group, Path(final.outputs[0])


def _summary(plane: ControlPlane, folder: Path) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(plane.read_output(folder / "summary.json"))
    return found


class _Audits:
    """Audits read once per version of their samples.csv (a page of thumbnails asks for
    each image by id); the last few kept."""

    KEEP = 4

    def __init__(self, plane: ControlPlane) -> None:
        self.plane = plane
        self._lock = threading.Lock()
        self._cache: OrderedDict[Path, tuple[float, Audit]] = OrderedDict()

    def get(self, name: str) -> Audit:
        group, folder = _finished(self.plane, name)
        mtime = (folder / "samples.csv").stat().st_mtime
        with self._lock:
            hit = self._cache.get(folder)
        if hit is not None and hit[0] == mtime:
            return hit[1]
        text = {c: str for c in ("id", "path", "defects", *LABELS)}  # "7", not 7.0
        raw = self.plane.read_output(folder / "samples.csv")
        frame = pd.read_csv(io.BytesIO(raw), dtype=text)
        for column in ("defects", *LABELS):
            frame[column] = frame[column].fillna("")
        positions = {sample: i for i, sample in enumerate(frame["id"])}
        where = None
        if (folder / MAP_FILE).is_file():
            raw = self.plane.read_output(folder / MAP_FILE)
            where = pd.read_csv(io.BytesIO(raw), dtype={"id": str, "neighbours": str})
            where["neighbours"] = where["neighbours"].fillna("")
            if list(where["id"]) != list(frame["id"]):
                where = None  # not this samples.csv's: show no map rather than a wrong one
        audit = Audit(group, folder, _summary(self.plane, folder), frame, positions, where)
        with self._lock:
            self._cache[folder] = (mtime, audit)
            self._cache.move_to_end(folder)
            while len(self._cache) > self.KEEP:
                self._cache.popitem(last=False)
        return audit


def _standing(plane: ControlPlane, name: str, sample: str) -> Review | None:
    """The sample's standing review, if it has one."""
    return plane.store.standing_reviews(name, [sample]).get(sample)


def _flagged(frame: pd.DataFrame, kind: str) -> pd.Series:
    column = frame[KINDS[kind][0]]
    return column != "" if kind == "defect" else column.astype(bool)


@dataclass(frozen=True)
class Filter:
    """What the sample browser shows: findings of ``kind`` (``all``: every kind; ``any``:
    every sample, flagged or not), of given label ``label`` (any: empty), scored in
    [low, high], inside the map's box [x0, x1] × [y0, y1] when one is drawn."""

    kind: str = "all"
    label: str = ""
    low: float = 0.0
    high: float = 1.0
    box: tuple[float, float, float, float] | None = None

    @property
    def query(self) -> str:
        """The filter as a URL query (no page, no page size)."""
        pairs = {"kind": self.kind, "label": self.label, "low": self.low, "high": self.high}
        if self.box is not None:
            pairs |= dict(zip(("x0", "x1", "y0", "y1"), self.box, strict=True))
        return urlencode(pairs)


def filters(
    kind: Annotated[str, Query(pattern="^(any|all|label|outlier|duplicate|defect)$")] = "all",
    label: Annotated[str, Query(max_length=200)] = "",
    low: Annotated[float, Query(ge=0, le=1)] = 0.0,
    high: Annotated[float, Query(ge=0, le=1)] = 1.0,
    x0: Annotated[float | None, Query(ge=0, le=1)] = None,
    x1: Annotated[float | None, Query(ge=0, le=1)] = None,
    y0: Annotated[float | None, Query(ge=0, le=1)] = None,
    y1: Annotated[float | None, Query(ge=0, le=1)] = None,
) -> Filter:
    if x0 is None and x1 is None and y0 is None and y1 is None:
        return Filter(kind, label, low, high)
    if x0 is None or x1 is None or y0 is None or y1 is None:
        raise ConfigError("a box on the map needs all of x0, x1, y0 and y1")
    return Filter(kind, label, low, high, (x0, x1, y0, y1))


def select(audit: Audit, f: Filter) -> pd.DataFrame:
    """The samples ``f`` asks for, worst first: for each kind of finding, a row per sample
    flagged for it; with ``any``, every sample once, ranked by its worst finding (its label
    quality when it has none)."""
    frame = audit.samples
    if f.kind == "any":
        rows = frame.copy()
        rows["kind"], rows["score"] = "none", rows["label_quality"].fillna(1.0)
        for k in reversed(KINDS):  # the first kind in KINDS names a row flagged twice
            hit = _flagged(rows, k)
            rows.loc[hit, "kind"], rows.loc[hit, "score"] = k, rows.loc[hit, KINDS[k][1]]
    else:
        parts = []
        for k in list(KINDS) if f.kind == "all" else [f.kind]:
            part = frame[_flagged(frame, k)].copy()
            part["kind"], part["score"] = k, part[KINDS[k][1]]
            parts.append(part)
        rows = pd.concat(parts)
    if f.label:
        rows = rows[rows["given_label"] == f.label]
    if f.box is not None:
        if audit.map is None:
            raise NotFoundError(f"the audit {audit.group.name} has no map to select from")
        x0, x1, y0, y1 = f.box
        xs, ys = audit.map["x"].to_numpy(), audit.map["y"].to_numpy()
        inside = (xs >= x0) & (xs <= x1) & (ys >= y0) & (ys <= y1)
        rows = rows[inside[rows.index.to_numpy()]]
    rows = rows[(rows["score"] >= f.low) & (rows["score"] <= f.high)]
    return rows.sort_values(["score", "id"], kind="stable")


def audits_router(plane: ControlPlane) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    audits = _Audits(plane)

    @router.get("/ui/audits")
    def listing(request: Request) -> HTMLResponse:
        found = []
        for group in plane.list_groups():
            if group.job == "audit":
                try:
                    _, folder = _finished(plane, group.name)
                    found.append({"group": group, "summary": _summary(plane, folder)})
                except (DespinaError, OSError):
                    continue  # running, failed, its folder gone or tampered with: see its group
        return page("console/audits.html", request, audits=found)

    def listing_values(request: Request, audit: Audit, f: Filter, page_no: int, per: int,
                       **extra: Any) -> dict[str, Any]:  # fmt: skip
        rows = select(audit, f)
        pages = max(1, -(-len(rows) // per))
        page_no = min(page_no, pages)  # past the end: the last page
        shown = rows.iloc[(page_no - 1) * per : page_no * per]
        name = audit.group.name
        return {
            "reviews": plane.store.standing_reviews(name, list(shown["id"])),
            "may": may_operate(request, name),
            "classes": audit.classes, "audit": audit, "rows": shown.to_dict("records"),
            "total": len(rows), "page": page_no, "pages": pages, "f": f, "per": per,
            "labels": sorted(audit.samples["given_label"].unique()), **extra,
        }  # fmt: skip

    @router.get("/ui/audits/{name}")
    def audit_page(
        request: Request,
        name: str,
        f: Annotated[Filter, Depends(filters)],
        page_no: Annotated[int, Query(alias="page", ge=1, le=10**6)] = 1,
        per: Annotated[int, Query(ge=5, le=500)] = PAGE_SIZE,
    ) -> HTMLResponse:
        audit = audits.get(name)
        values = listing_values(request, audit, f, page_no, per)
        if request.headers.get("hx-request") and request.headers.get("hx-target") == "samples":
            return HTMLResponse(fragment("console/samples.html", **values))
        chart = confusion_svg(confusions(audit.samples))
        return page("console/audit.html", request, confusion=chart, **values)

    @router.get("/ui/audits/{name}/map.json")
    def map_points(name: str) -> JSONResponse:
        """Each mapped sample's position, class and whether anything flagged it, as
        columns."""
        audit = audits.get(name)
        if audit.map is None:
            raise NotFoundError(f"the audit {name} has no map: see its summary")
        frame, mapped = audit.samples, audit.map["x"].notna().to_numpy()
        flagged = np.logical_or.reduce([_flagged(frame, k).to_numpy() for k in KINDS])
        labels = sorted(frame["given_label"].unique())
        code = {label: i for i, label in enumerate(labels)}
        return JSONResponse({
            "labels": labels, "x": audit.map["x"].to_numpy()[mapped].tolist(),
            "y": audit.map["y"].to_numpy()[mapped].tolist(),
            "label": [code[v] for v in frame["given_label"].to_numpy()[mapped]],
            "flagged": flagged[mapped].astype(int).tolist(),
        }, headers={"Cache-Control": "private, max-age=60"})  # fmt: skip

    def cell(request: Request, audit: Audit, sample: str, review: Review | None,
             replaced: Review | None = None) -> HTMLResponse:  # fmt: skip
        """A sample's review cell, after a button changed it; ``replaced``: someone else's
        review that this one replaced since the page was drawn."""
        return HTMLResponse(fragment(
            "console/review.html", audit=audit, id=sample, review=review, replaced=replaced,
            may=may_operate(request, audit.group.name), classes=audit.classes,
        ))  # fmt: skip

    def checked(audit: Audit, action: str, label: str) -> None:
        if action == "relabel" and label not in audit.classes:
            raise ConfigError(f"cannot relabel to {label!r}: the classes are {audit.classes}")

    def reviewer(request: Request) -> str:
        principal = principal_of(request)
        return principal.user if principal is not None else "anonymous"

    @router.post("/ui/audits/{name}/reviews")
    def review(
        request: Request,
        name: str,
        sample: Annotated[str, Form(max_length=4096)],
        action: Annotated[str, Form(pattern=f"^({'|'.join(ACTIONS)})$")],
        label: Annotated[str, Form(max_length=200)] = "",
        seen: Annotated[int, Form(ge=0)] = 0,
    ) -> HTMLResponse:
        """Record a review; the last one wins, and the page says whose it replaced when
        the standing review is not the one it showed (``seen``: its id, 0 for none)."""
        audit = audits.get(name)
        audit.row(sample)
        checked(audit, action, label)
        before = _standing(plane, name, sample)
        made = plane.store.add_review(name, sample, action, label or None, reviewer(request))
        replaced = before if before is not None and before.id != seen else None
        return cell(request, audit, sample, made, replaced)

    @router.post("/ui/audits/{name}/reviews/bulk")
    def review_all(
        request: Request,
        name: str,
        f: Annotated[Filter, Depends(filters)],
        action: Annotated[str, Form(pattern=f"^({'|'.join(ACTIONS)})$")],
        label: Annotated[str, Form(max_length=200)] = "",
        per: Annotated[int, Query(ge=5, le=500)] = PAGE_SIZE,
    ) -> HTMLResponse:
        """One review of every sample the filter selects (each once), at most BULK."""
        audit = audits.get(name)
        checked(audit, action, label)
        chosen = list(dict.fromkeys(select(audit, f)["id"]))
        if len(chosen) > BULK:
            raise ConfigError(f"{len(chosen)} samples selected: review at most {BULK} at "
                              "once (narrow the filter or draw a smaller box)")  # fmt: skip
        plane.store.add_reviews(name, chosen, action, label or None, reviewer(request))
        done = f"{len(chosen)} samples reviewed: {action}" + (f" → {label}" if label else "")
        values = listing_values(request, audit, f, 1, per, done=done)
        return HTMLResponse(fragment("console/samples.html", **values))

    @router.post("/ui/audits/{name}/reviews/undo")
    def undo(
        request: Request, name: str, sample: Annotated[str, Form(max_length=4096)]
    ) -> HTMLResponse:
        audit = audits.get(name)
        audit.row(sample)
        plane.store.undo_review(name, sample)
        return cell(request, audit, sample, _standing(plane, name, sample))

    @router.get("/ui/audits/{name}/sample")
    def sample_page(
        request: Request, name: str, id: Annotated[str, Query(max_length=4096)]
    ) -> HTMLResponse:
        audit = audits.get(name)
        row = audit.row(id)
        group, frame = row.get("duplicate_group"), audit.samples
        twins = []
        if group is not None and not pd.isna(group):
            twins = frame[(frame["duplicate_group"] == group) & (frame["id"] != id)].to_dict(
                "records"
            )
        return page(
            "console/sample.html", request, audit=audit, row=row, twins=twins,
            neighbours=audit.neighbours(id),
            review=_standing(plane, name, id),
            may=may_operate(request, name),
            classes=audit.classes,
        )  # fmt: skip

    @router.get("/ui/audits/{name}/image")
    def image(name: str, id: Annotated[str, Query(max_length=4096)]) -> Response:
        audit = audits.get(name)
        path = Path(str(audit.row(id)["path"])).resolve()
        root = Path(audit.group.source).resolve()
        root = root if root.is_dir() else root.parent
        if not path.is_relative_to(root):
            raise PathEscapeError(f"sample {id!r} lies outside the audited source {root}")
        kind = IMAGE_TYPES.get(path.suffix.lower())
        if kind is None or not path.is_file():
            raise NotFoundError(f"sample {id!r} has no image to show")
        headers = {"Cache-Control": "private, max-age=3600"}
        return Response(path.read_bytes(), media_type=kind, headers=headers)

    return router
