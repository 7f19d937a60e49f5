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

    @property
    def classes(self) -> list[str]:
        return [str(c) for c in self.summary.get("classes", [])]

    def row(self, sample: str) -> dict[str, Any]:
        """The sample's row; NotFoundError for an id the audit does not have."""
        if sample not in self.positions:
            raise NotFoundError(f"the audit {self.group.name} has no sample {sample!r}")
        return {str(k): v for k, v in self.samples.iloc[self.positions[sample]].items()}


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
        audit = Audit(group, folder, _summary(self.plane, folder), frame, positions)
        with self._lock:
            self._cache[folder] = (mtime, audit)
            self._cache.move_to_end(folder)
            while len(self._cache) > self.KEEP:
                self._cache.popitem(last=False)
        return audit


def _standing(plane: ControlPlane, name: str) -> dict[str, Review]:
    """Each reviewed sample's standing review."""
    return {r.sample: r for r in plane.list_reviews(name)}


def _flagged(frame: pd.DataFrame, kind: str) -> pd.Series:
    column = frame[KINDS[kind][0]]
    return column != "" if kind == "defect" else column.astype(bool)


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
        rows = rows[rows["given_label"] == label]
    rows = rows[(rows["score"] >= low) & (rows["score"] <= high)]
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
        audit = audits.get(name)
        rows = select(audit.samples, kind, label, low, high)
        pages = max(1, -(-len(rows) // per))
        page_no = min(page_no, pages)  # past the end: the last page
        shown = rows.iloc[(page_no - 1) * per : page_no * per]
        values = {
            "reviews": _standing(plane, name), "may": may_operate(request, name),
            "classes": audit.classes, "audit": audit, "rows": shown.to_dict("records"),
            "total": len(rows), "page": page_no, "pages": pages, "kind": kind,
            "label": label, "low": low, "high": high, "per": per,
            "labels": sorted(audit.samples["given_label"].unique()),
        }  # fmt: skip
        if request.headers.get("hx-request") and request.headers.get("hx-target") == "samples":
            return HTMLResponse(fragment("console/samples.html", **values))
        return page("console/audit.html", request, **values)

    def cell(request: Request, audit: Audit, sample: str, review: Review | None) -> HTMLResponse:
        """A sample's review cell, after a button changed it."""
        return HTMLResponse(fragment(
            "console/review.html", audit=audit, id=sample, review=review,
            may=may_operate(request, audit.group.name), classes=audit.classes,
        ))  # fmt: skip

    @router.post("/ui/audits/{name}/reviews")
    def review(
        request: Request,
        name: str,
        sample: Annotated[str, Form(max_length=4096)],
        action: Annotated[str, Form(pattern=f"^({'|'.join(ACTIONS)})$")],
        label: Annotated[str, Form(max_length=200)] = "",
    ) -> HTMLResponse:
        audit = audits.get(name)
        audit.row(sample)
        if action == "relabel" and label not in audit.classes:
            raise ConfigError(f"cannot relabel to {label!r}: the classes are {audit.classes}")
        principal = principal_of(request)
        user = principal.user if principal is not None else "anonymous"
        made = plane.store.add_review(name, sample, action, label or None, user)
        return cell(request, audit, sample, made)

    @router.post("/ui/audits/{name}/reviews/undo")
    def undo(
        request: Request, name: str, sample: Annotated[str, Form(max_length=4096)]
    ) -> HTMLResponse:
        audit = audits.get(name)
        audit.row(sample)
        plane.store.undo_review(name, sample)
        return cell(request, audit, sample, _standing(plane, name).get(sample))

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
            review=_standing(plane, name).get(id), may=may_operate(request, name),
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
