"""``despina cluster``: where tasks run (local processes or Ray), and Ray launcher configs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
import yaml

from despina.cli.common import (
    AsJson,
    Server,
    client_for,
    console,
    err,
    handled,
    print_listing,
)
from despina.control.models import ClusterSpec, Resources
from despina.core.errors import ConfigError

cluster_app = typer.Typer(
    help="Clusters: where tasks run (local processes or Ray).", no_args_is_help=True
)
config_app = typer.Typer(help="Write Ray cluster-launcher configs.", no_args_is_help=True)
cluster_app.add_typer(config_app, name="config")


@cluster_app.command("create")
@handled
def cluster_create(
    name: str,
    backend: Annotated[str, typer.Option(help="local or ray")] = "local",
    workers: Annotated[int, typer.Option(help="tasks at the same time")] = 2,
    address: Annotated[str | None, typer.Option(help="Ray head address, or auto")] = None,
    cpus: Annotated[float, typer.Option(help="CPU cores of the cluster")] = 2.0,
    memory_gb: Annotated[float | None, typer.Option(help="memory in GiB")] = None,
    gpus: Annotated[float, typer.Option(help="GPUs")] = 0.0,
    server: Server = None,
) -> None:
    """Register a cluster."""
    if backend not in ("local", "ray"):
        raise ConfigError(f"--backend must be local or ray, not {backend!r}")
    spec = ClusterSpec(
        name=name,
        backend=backend,
        address=address,
        workers=workers,
        resources=Resources(cpus=cpus, memory_gb=memory_gb, gpus=gpus),
    )
    c = client_for(server).create_cluster(spec)
    console.print(f"cluster {c.name} ({c.backend}, {c.workers} workers) created")


@cluster_app.command("ls")
@handled
def cluster_ls(as_json: AsJson = False, server: Server = None) -> None:
    """List clusters."""
    clusters = client_for(server).list_clusters()
    print_listing(
        clusters,
        as_json,
        ("name", "backend", "address", "workers", "cpus"),
        lambda c: (c.name, c.backend, c.address or "", str(c.workers), f"{c.resources.cpus:g}"),
    )


@cluster_app.command("rm")
@handled
def cluster_rm(name: str, server: Server = None) -> None:
    """Remove a cluster that no task group uses."""
    client_for(server).delete_cluster(name)
    console.print(f"cluster {name} removed")


@config_app.command("aws")
@handled
def cluster_config_aws(
    name: Annotated[str, typer.Option("--name", help="cluster name")] = "despina",
    instance_type: Annotated[str, typer.Option(help="EC2 instance type")] = "m5.xlarge",
    min_workers: Annotated[int, typer.Option(help="workers kept up")] = 0,
    max_workers: Annotated[int, typer.Option(help="workers at most")] = 8,
    region: Annotated[str, typer.Option(help="AWS region")] = "us-east-1",
    subnet_id: Annotated[str | None, typer.Option(help="subnet for the nodes")] = None,
    security_group_id: Annotated[str | None, typer.Option(help="security group")] = None,
    image_id: Annotated[str | None, typer.Option(help="AMI (default: Ray's)")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="file (default: stdout)")] = None,
) -> None:
    """Write a Ray cluster-launcher YAML for AWS (use it with 'ray up FILE')."""
    from despina.control.launcher import AwsClusterConfig, aws_config

    cfg = aws_config(
        AwsClusterConfig(
            cluster_name=name,
            instance_type=instance_type,
            min_workers=min_workers,
            max_workers=max_workers,
            region=region,
            subnet_id=subnet_id,
            security_group_id=security_group_id,
            image_id=image_id,
        )
    )
    text = yaml.safe_dump(cfg, sort_keys=False)
    if out is None:
        typer.echo(text)
    else:
        out.write_text(text)
        err.print(f"wrote {out}; launch it with: ray up {out}")
