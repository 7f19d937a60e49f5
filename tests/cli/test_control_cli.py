"""``despina cluster|group|task``: the documented forms, JSON output, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from despina.cli.app import app
from tests.control.fixtures import ThreadServer

runner = CliRunner()


def ok(*args: str) -> str:
    res = runner.invoke(app, list(args))
    assert res.exit_code == 0, res.output
    return res.stdout


def fails(code: int, *args: str) -> str:
    res = runner.invoke(app, list(args))
    assert res.exit_code == code, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    return lines[0]


def test_preprocess_group_end_to_end(home: Path) -> None:
    ok("cluster", "create", "local", "--backend", "local", "--workers", "2")
    clusters = json.loads(ok("cluster", "ls", "--json"))
    assert [(c["name"], c["backend"], c["workers"]) for c in clusters] == [("local", "local", 2)]
    cfg = home / "prep.yaml"
    cfg.write_text("size: 16\nmean: 0.5\nstd: 0.25\n")
    ok(
        "group",
        "create",
        "digits",
        "--cluster",
        "local",
        "--source",
        "builtin:digits",
        "--job",
        "preprocess",
        "--config",
        str(cfg),
        "--partitions",
        "3",
    )
    ok("group", "start", "digits", "--wait")
    status = json.loads(ok("group", "status", "digits", "--json"))
    assert status["name"] == "digits" and status["state"] == "SUCCEEDED"
    assert status["counts"]["SUCCEEDED"] == 3 and status["done"] == 1797
    assert status["output"] == str(home / "outputs" / "digits")
    tasks = json.loads(ok("task", "ls", "--group", "digits", "--json"))
    assert [t["partition"] for t in tasks] == [0, 1, 2]
    assert sum(t["metrics"]["rows"] for t in tasks) == 1797
    assert "RUNNING → SUCCEEDED" in ok("task", "show", str(tasks[0]["id"]))
    assert "succeeded" in ok("task", "logs", str(tasks[0]["id"]))
    assert "1,797 rows" in ok("group", "result", "digits")
    assert "digits" in ok("group", "ls")
    # Not a terminal (as in a pipe or a CI log): one readable line per task, no table cells.
    watched = ok("task", "watch", "--group", "digits", "--interval", "0.1").splitlines()
    assert [line.split()[2] for line in watched[:3]] == ["digits[0]", "digits[1]", "digits[2]"]
    assert all("SUCCEEDED" in line for line in watched[:3]) and "│" not in "".join(watched)
    assert watched[-1].startswith("group digits: SUCCEEDED, 1,797 items")
    fails(7, "task", "cancel", str(tasks[0]["id"]))
    ok("group", "rm", "digits")
    ok("cluster", "rm", "local")


def test_bad_input_exits_with_one_line(
    home: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    ok("cluster", "create", "local")
    assert "already exists" in fails(6, "cluster", "create", "local")
    assert "--backend must be" in fails(2, "cluster", "create", "x", "--backend", "k8s")
    assert "workers" in fails(2, "cluster", "create", "x", "--workers", "0")
    assert "no task group" in fails(4, "group", "start", "nope")
    assert "no task with id" in fails(4, "task", "show", "77")
    base = ["group", "create", "g", "--cluster", "local"]
    outside = tmp_path_factory.mktemp("outside")
    assert "outside the allowed roots" in fails(
        3, *base, "--source", str(outside), "--job", "preprocess"
    )
    assert "KEY=VALUE" in fails(
        2, *base, "--source", "builtin:digits", "--job", "preprocess", "--env", "oops"
    )
    assert "exactly one" in fails(2, *base, "--source", "builtin:digits")
    assert "does not exist" in fails(
        4, *base, "--source", "builtin:digits", "--script", str(home / "none.py")
    )
    bad_cfg = home / "bad.yaml"
    bad_cfg.write_text("size: [1, 2\n")
    assert "not valid YAML" in fails(
        2, *base, "--source", "builtin:digits", "--job", "preprocess", "--config", str(bad_cfg)
    )
    assert "whole source" in fails(
        2, *base, "--source", "builtin:digits", "--job", "train", "--partitions", "2"
    )


def test_the_cli_talks_to_a_server(
    api_server: ThreadServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert "needs a token" in fails(10, "cluster", "ls", "--server", api_server.url)
    monkeypatch.setenv("DESPINA_TOKEN", api_server.token)
    ok("cluster", "create", "remote", "--workers", "1", "--server", api_server.url)
    names = [
        c["name"] for c in json.loads(ok("cluster", "ls", "--json", "--server", api_server.url))
    ]
    assert names == ["remote"]
    assert "already exists" in fails(6, "cluster", "create", "remote", "--server", api_server.url)
    assert "cannot reach" in fails(1, "cluster", "ls", "--server", "http://127.0.0.1:9")


FLAKY = """
import os

def process(batch, context):
    if context.partition == 1 and not os.path.exists(os.environ["FLAG"]):
        raise RuntimeError("partition 1 fails until the flag is set")
    return [{"name": os.path.basename(p)} for p in batch]
"""


def test_group_retry_and_result_through_a_server(
    api_server: ThreadServer, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failed partition retried with one command; the rows read back through the API."""
    from tests.control.fixtures import write_files
    from tests.waiting import wait_for

    monkeypatch.setenv("DESPINA_TOKEN", api_server.token)
    monkeypatch.setenv("DESPINA_SERVER", api_server.url)
    (home / "flaky.py").write_text(FLAKY)
    ok("cluster", "create", "c")
    source = str(write_files(home / "data", 6))
    flaky = str(home / "flaky.py")
    ok("group", "create", "g", "--cluster", "c", "--source", source, "--partitions", "3",
       "--script", flaky, "--max-retries", "0", "--env", f"FLAG={home}/flag")  # fmt: skip
    assert "3 task(s) started on the server" in ok("group", "start", "g")
    state = lambda: json.loads(ok("group", "status", "g", "--json"))["state"]  # noqa: E731
    wait_for(lambda: state() == "FAILED", 60, 0.2, "partition 1 failing")
    assert "not complete" in fails(4, "group", "result", "g")
    (home / "flag").write_text("go")
    assert "g: 1 task(s) retried" in ok("group", "retry", "g")
    wait_for(lambda: state() == "SUCCEEDED", 60, 0.2, "the retried partition")
    assert "6 rows; columns: name" in ok("group", "result", "g", "--out", str(home / "g.parquet"))
    import pyarrow.parquet as pq

    assert pq.read_table(home / "g.parquet").num_rows == 6
    assert "no failed or cancelled task" in fails(4, "group", "retry", "g")


def test_aws_cluster_config_is_accepted_by_rays_schema(home: Path) -> None:
    pytest.importorskip("ray", reason="Ray is not installed: pip install 'despina[ray]'")
    from ray.autoscaler._private.util import prepare_config, validate_config

    out = home / "cluster.yaml"
    ok(
        "cluster",
        "config",
        "aws",
        "--instance-type",
        "m5.xlarge",
        "--min-workers",
        "0",
        "--max-workers",
        "8",
        "--region",
        "eu-west-1",
        "--subnet-id",
        "subnet-123",
        "--security-group-id",
        "sg-456",
        "--out",
        str(out),
    )
    cfg = yaml.safe_load(out.read_text())
    # What `ray up` does with a config: fill its defaults, then validate against the schema.
    validate_config(prepare_config(cfg))
    worker = cfg["available_node_types"]["ray.worker.default"]
    assert worker["node_config"] == {
        "InstanceType": "m5.xlarge",
        "SubnetIds": ["subnet-123"],
        "SecurityGroupIds": ["sg-456"],
    }
    assert (worker["min_workers"], cfg["max_workers"]) == (0, 8)
    assert "max-workers" in fails(
        2, "cluster", "config", "aws", "--min-workers", "9", "--max-workers", "2"
    )
    broken = {k: v for k, v in cfg.items() if k != "available_node_types"}
    broken["available_node_types"] = {"x": {"node_config": {}}}  # no resources: refused
    with pytest.raises(Exception, match="resources"):
        validate_config(prepare_config(broken))


@pytest.mark.slow
def test_an_audit_on_a_cluster_runs_in_stages_and_brings_the_report_back(home: Path) -> None:
    from tests.conftest import write_digits

    data = write_digits(home / "digits", per_class=10)
    ok("cluster", "create", "local", "--workers", "2")
    out = home / "out"
    text = ok("audit", str(data), "--out", str(out), "--cluster", "local", "--partitions", "3",
              "--folds", "2", "--epochs", "3", "--label-rounds", "1", "--width", "8")  # fmt: skip
    flat = " ".join(text.split())
    assert "health score" in flat and "on cluster local" in flat, flat
    summary = json.loads((out / "summary.json").read_text())  # decrypted for the user
    assert summary["counts"]["samples"] == 100
    (group,) = json.loads(ok("group", "ls", "--json"))
    tasks = json.loads(ok("task", "ls", "--group", group["name"], "--json"))
    assert sorted(t["stage"] for t in tasks) == [0, 0, 0, 1, 1, 2]  # scans, folds, audit
    assert "tables, series" in fails(2, "audit", str(home / "t.csv"), "--out", str(out),
                                     "--cluster", "local", "--kind", "table")  # fmt: skip
