"""``despina audit --cluster``: the image audit as a staged task group, run to its end."""

from __future__ import annotations

import time
from pathlib import Path

from despina.cli.common import client_for, console, err, fail, print_findings
from despina.control.models import GroupSpec
from despina.control.states import TaskState
from despina.core.config import AuditConfig
from despina.core.errors import DespinaError
from despina.security.envelope import file_context


def audit_on_cluster(
    source: str, out: Path, cfg: AuditConfig, cluster: str, partitions: int, server: str | None
) -> None:
    """``despina audit --cluster``: a staged audit group, run to its end; the report copied
    (decrypted) into ``out`` when the plane is embedded, its place printed otherwise."""
    name = f"audit-{time.strftime('%Y%m%d-%H%M%S')}"
    try:
        client = client_for(server)
        client.create_group(GroupSpec(name=name, cluster=cluster, source=source, job="audit",
                                      config=cfg.model_dump(mode="json"),
                                      partitions=partitions))  # fmt: skip
        err.print(f"group {name}: {partitions} scan task(s), then the audit", highlight=False)
        tasks = client.start_group(name, wait=True)
    except DespinaError as exc:
        raise fail(str(exc), exc.exit_code) from None
    final = max(tasks, key=lambda t: (t.stage, t.partition))
    if final.state is not TaskState.SUCCEEDED or not final.outputs:
        failed = [t for t in tasks if t.state is not TaskState.SUCCEEDED]
        reasons = "; ".join(f"task {t.id}: {t.exit_reason}" for t in failed[:3])
        raise fail(f"group {name} did not finish: {reasons} (despina task logs ID)", 1)
    folder = Path(final.outputs[0])
    if server is None:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            target = out / path.relative_to(folder)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(
                client.read_output(path, file_context(path.relative_to(folder.parent)))
            )
        folder = out
    counts = {k: v for k, v in final.metrics.items()
              if k not in ("seconds", "items", "health_score", "node")}  # fmt: skip
    console.print(f"[bold]Audit of[/] {source} on cluster {cluster} (group {name})",
                  highlight=False)  # fmt: skip
    print_findings(counts, final.metrics.get("health_score", 0.0))
    console.print(f"report: {folder / 'report.html'}")
