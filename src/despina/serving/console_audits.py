"""The console's audit pages: every audit job the store knows, and a browser of all its
flagged samples (not a sample of them), filtered by finding, class and score, sorted by
score and paged, with each image shown from the audited source."""

from __future__ import annotations

import io
import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, Response

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
from despina.security.roles import Permission
from despina.serving.console_pages import fragment, page, principal_of

#: Each kind of finding: the flag column, and the score that ranks it (low = worst).
KINDS = {
    "label": ("is_label_issue", "label_quality"),
    "outlier": ("is_outlier", "outlier_score"),
    "duplicate": ("is_duplicate", "duplicate_score"),
    "defect": ("defects", "defect_score"),
}
PAGE_SIZE = 50
LABELS = ("given_label", "predicted_label", "suggested_label")
IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg",
               ".gif": "image/gif", ".bmp": "image/bmp", ".webp": "image/webp"}  # fmt: skip


@dataclass(frozen=True)
class Audit:
    group: TaskGroup
    folder: Path
    summary: dict[str, Any]


class _Samples:
    """Each audit's samples.csv, parsed once per version of the file."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cache: dict[Path, tuple[float, pd.DataFrame]] = {}

    def get(self, plane: ControlPlane, folder: Path) -> pd.DataFrame:
        path = folder / "samples.csv"
        mtime = path.stat().st_mtime
        with self._lock:
            hit = self._cache.get(path)
        if hit is not None and hit[0] == mtime:
            return hit[1]
        text = {c: str for c in ("id", "path", "defects", *LABELS)}  # "7", not 7.0
        frame = pd.read_csv(io.BytesIO(plane.read_output(path)), dtype=text)
        for column in ("defects", *LABELS):
            frame[column] = frame[column].fillna("")
        with self._lock:
            self._cache[path] = (mtime, frame)
        return frame


def _audit(plane: ControlPlane, name: str) -> Audit:
    """The finished audit of group ``name``; NotFoundError/StateError saying why not."""
    group = plane.get_group(name)
    if group.job != "audit":
        raise NotFoundError(f"group {name} is a {group.job or 'script'} group, not an audit")
    tasks = plane.list_tasks(group=name)
    final = max(tasks, key=lambda t: (t.stage, t.partition), default=None)
    if final is None or final.state is not TaskState.SUCCEEDED or not final.outputs:
        raise StateError(f"the audit {name} has not finished: see /ui/groups/{name}")
    folder = Path(final.outputs[0])
    summary = json.loads(plane.read_output(folder / "summary.json"))
    return Audit(group, folder, summary)


def _may_review(request: Request, group: str) -> bool:
    principal = principal_of(request)
    return principal is not None and principal.allows(Permission.OPERATE, "group", group)


def _flagged(frame: pd.DataFrame, kind: str) -> pd.Series:
    flag, _ = KINDS[kind]
    column = frame[flag]
    return column.astype(str).str.len() > 0 if kind == "defect" else column.astype(bool)


def select(frame: pd.DataFrame, kind: str, label: str, low: float, high: float) -> pd.DataFrame:
    """The samples flagged for ``kind`` (every kind: ``all``), of given label ``label``
    (any: empty), whose score lies in [low, high], worst first."""
    kinds = list(KINDS) if kind == "all" else [kind]
    parts = []
    for k in kinds:
        rows = frame[_flagged(frame, k)].copy()
        rows["kind"], rows["score"] = k, rows[KINDS[k][1]]
        parts.append(rows)
    rows = pd.concat(parts) if parts else frame.iloc[:0]
    if label:
        rows = rows[rows["given_label"].astype(str) == label]
    rows = rows[(rows["score"] >= low) & (rows["score"] <= high)]
    return rows.sort_values(["score", "id"], kind="stable")


def audits_router(plane: ControlPlane) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    samples = _Samples()

    @router.get("/ui/audits")
    def audits(request: Request) -> HTMLResponse:
        found = []
        for group in plane.list_groups():
            if group.job == "audit":
                try:
                    found.append(_audit(plane, group.name))
                except (DespinaError, OSError):
                    continue  # running, failed, its folder gone or tampered with: see its group
        return page("console/audits.html", request, audits=found)

    @router.get("/ui/audits/{name}")
    def audit_page(
        request: Request,
        name: str,
        kind: Annotated[str, Query(pattern="^(all|label|outlier|duplicate|defect)$")] = "all",
        label: Annotated[str, Query(max_length=200)] = "",
        low: Annotated[float, Query(ge=0, le=1)] = 0.0,
        high: Annotated[float, Query(ge=0, le=1)] = 1.0,
        page_no: Annotated[int, Query(alias="page", ge=1, le=10**6)] = 1,
        per: Annotated[int, Query(ge=5, le=500)] = PAGE_SIZE,
    ) -> HTMLResponse:
        audit = _audit(plane, name)
        frame = samples.get(plane, audit.folder)
        rows = select(frame, kind, label, low, high)
        pages = max(1, -(-len(rows) // per))
        page_no = min(page_no, pages)  # past the end: the last page
        shown = rows.iloc[(page_no - 1) * per : page_no * per]
        reviews = {r.sample: r for r in plane.list_reviews(name)}
        values = {
            "reviews": reviews, "may": _may_review(request, name),
            "classes": audit.summary.get("classes", []),
            "audit": audit, "rows": shown.to_dict("records"), "total": len(rows),
            "page": page_no, "pages": pages, "kind": kind, "label": label, "low": low,
            "high": high, "per": per, "labels": sorted(frame["given_label"].astype(str).unique()),
        }  # fmt: skip
        if request.headers.get("hx-request") and request.headers.get("hx-target") == "samples":
            return HTMLResponse(fragment("console/samples.html", **values))
        return page("console/audit.html", request, **values)

    def cell(request: Request, audit: Audit, sample: str, review: Review | None) -> str:
        may = _may_review(request, audit.group.name)
        return fragment("console/review.html", audit=audit, id=sample, review=review,
                        may=may, classes=audit.summary.get("classes", []))  # fmt: skip

    def sample_of(audit: Audit, sample: str) -> str:
        frame = samples.get(plane, audit.folder)
        if not (frame["id"] == sample).any():
            raise NotFoundError(f"the audit {audit.group.name} has no sample {sample!r}")
        return sample

    @router.post("/ui/audits/{name}/reviews")
    def review(
        request: Request,
        name: str,
        sample: Annotated[str, Form(max_length=4096)],
        action: Annotated[str, Form(pattern="^(keep|relabel|drop|outlier)$")],
        label: Annotated[str, Form(max_length=200)] = "",
    ) -> HTMLResponse:
        audit = _audit(plane, name)
        sample_of(audit, sample)
        classes = [str(c) for c in audit.summary.get("classes", [])]
        if action == "relabel" and label not in classes:
            raise ConfigError(f"cannot relabel to {label!r}: the classes are {classes}")
        principal = principal_of(request)
        user = principal.user if principal is not None else "anonymous"
        made = plane.store.add_review(name, sample, action, label or None, user)
        return HTMLResponse(cell(request, audit, sample, made))

    @router.post("/ui/audits/{name}/reviews/undo")
    def undo(
        request: Request, name: str, sample: Annotated[str, Form(max_length=4096)]
    ) -> HTMLResponse:
        audit = _audit(plane, name)
        sample_of(audit, sample)
        plane.store.undo_review(name, sample)
        standing = {r.sample: r for r in plane.list_reviews(name)}
        return HTMLResponse(cell(request, audit, sample, standing.get(sample)))

    @router.get("/ui/audits/{name}/sample")
    def sample_page(
        request: Request, name: str, id: Annotated[str, Query(max_length=4096)]
    ) -> HTMLResponse:
        audit = _audit(plane, name)
        frame = samples.get(plane, audit.folder)
        found = frame[frame["id"] == id]
        if found.empty:
            raise NotFoundError(f"the audit {name} has no sample {id!r}")
        row = found.iloc[0].to_dict()
        group = row.get("duplicate_group")
        twins = []
        if group is not None and not pd.isna(group):
            same = frame[(frame["duplicate_group"] == group) & (frame["id"] != id)]
            twins = same.to_dict("records")
        standing = {r.sample: r for r in plane.list_reviews(name)}
        return page(
            "console/sample.html", request, audit=audit, row=row, twins=twins,
            review=standing.get(id), may=_may_review(request, name),
            classes=audit.summary.get("classes", []),
        )  # fmt: skip

    @router.get("/ui/audits/{name}/image")
    def image(name: str, id: Annotated[str, Query(max_length=4096)]) -> Response:
        audit = _audit(plane, name)
        frame = samples.get(plane, audit.folder)
        found = frame.loc[frame["id"] == id, "path"]
        if found.empty:
            raise NotFoundError(f"the audit {name} has no sample {id!r}")
        path = Path(str(found.iloc[0])).resolve()
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
