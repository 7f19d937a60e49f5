"""The examples the README and docs point to run as written, on data with broken files."""

from __future__ import annotations

from pathlib import Path

from despina.control.models import ClusterSpec, GroupSpec
from despina.control.plane import ControlPlane
from despina.data.inject import export_digits, inject_problems

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_count_pixels_runs_on_a_folder_with_unreadable_files(
    plane: ControlPlane, home: Path
) -> None:
    data = home / "data"
    export_digits(data, size=8)
    truth = inject_problems(data, seed=0, blurred=0, darkened=0, near_duplicates=0)
    assert truth.corrupt  # the demo's own broken files are there
    script = home / "count_pixels.py"  # where a user keeps it: inside the allowed roots
    script.write_text((EXAMPLES / "count_pixels.py").read_text())
    plane.create_cluster(ClusterSpec(name="local", workers=2))
    plane.create_group(
        GroupSpec(
            name="stats",
            cluster="local",
            source=str(data),
            script=str(script),
            partitions=3,
        )
    )
    tasks = plane.start_group("stats", wait=True)
    assert all(t.state.value == "SUCCEEDED" for t in tasks), [t.exit_reason for t in tasks]
    rows = plane.group_result("stats").to_pandas()
    assert len(rows) == 1797 + len(truth.corrupt)
    unreadable = rows[rows["error"] == "unreadable"]
    assert sorted(Path(p).name for p in unreadable["path"]) == sorted(
        Path(c).name for c in truth.corrupt
    )
    assert rows["mean"].notna().sum() == 1797
