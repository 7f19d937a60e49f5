"""The console's study pages: an optimize group's model search as it stands (its trials,
the best accuracy so far against the default model's, and which parameters mattered),
read from the study's own storage while its workers write to it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from despina.control.builtin_jobs import parse_config
from despina.control.plane import ControlPlane
from despina.core.errors import NotFoundError
from despina.serving.console_pages import fragment, page

#: The most trials a study's page lists, newest first (its counts cover all).
TRIALS_SHOWN = 100


def studies_router(plane: ControlPlane) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    # Each study's importances (fANOVA, seconds on many trials) for its completed count.
    weights: dict[str, tuple[int, dict[str, float]]] = {}

    def view(name: str) -> dict[str, Any]:
        import optuna

        from despina.jobs.search_report import best_so_far, curve_svg, importances
        from despina.jobs.search_space import Space
        from despina.jobs.study import close_storage, study_storage, trial_rows

        group = plane.get_group(name)
        if group.job != "optimize":
            raise NotFoundError(f"group {name} is a {group.job or 'script'} group, not a search")
        cfg = parse_config("optimize", dict(group.config or {}))
        storage = study_storage(Path(group.output) / "study.journal", plane.settings.database_url)
        try:
            rows = trial_rows(optuna.load_study(study_name=cfg.study or name, storage=storage))
        except KeyError:
            rows = []  # no worker has opened the study yet
        finally:
            close_storage(storage)
        complete = [r for r in rows if r["state"] == "COMPLETE" and r["accuracy"] is not None]
        if weights.get(name, (-1, {}))[0] != len(complete):
            found = importances(rows, Space.parse(cfg.space).distributions())
            weights[name] = (len(complete), found)
        default = next((r["accuracy"] for r in complete if r["default"]), None)
        best = max(complete, key=lambda r: r["accuracy"], default=None)
        counts = {s: sum(r["state"] == s for r in rows)
                  for s in ("RUNNING", "COMPLETE", "PRUNED", "FAIL")}  # fmt: skip
        return {
            "group": group, "trials": sorted(rows, key=lambda r: -r["number"])[:TRIALS_SHOWN],
            "total": len(rows), "counts": counts, "best": best, "default": default,
            "curve": curve_svg(best_so_far(rows), default), "weights": weights[name][1],
            "wanted": cfg.trials,
        }  # fmt: skip

    @router.get("/ui/studies/{name}")
    def study_page(request: Request, name: str) -> HTMLResponse:
        return page("console/study.html", request, **view(name))

    @router.get("/ui/studies/{name}/trials")
    def study_part(name: str) -> HTMLResponse:
        """The page's live part, which it asks for again every few seconds."""
        return HTMLResponse(fragment("console/study_body.html", **view(name)))

    return router
