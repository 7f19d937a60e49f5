"""Ray cluster-launcher configs: ``despina cluster config aws`` writes a YAML ``ray up`` takes.

Nothing is launched here. The config installs Despina on every node and starts the head
with the dashboard off; point ``despina cluster create NAME --backend ray --address
HEAD:6379`` at it once it is up.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from despina.core.config import FrozenModel
from despina.core.errors import ConfigError


class AwsClusterConfig(FrozenModel):
    cluster_name: str = "despina"
    instance_type: str = "m5.xlarge"
    head_instance_type: str | None = None
    min_workers: int = Field(0, ge=0)
    max_workers: int = Field(8, ge=0)
    region: str = "us-east-1"
    subnet_id: str | None = None
    security_group_id: str | None = None
    image_id: str | None = None
    ssh_user: str = "ubuntu"
    despina_requirement: str = "despina[ray,postgres]"


def aws_config(cfg: AwsClusterConfig) -> dict[str, Any]:
    """A Ray autoscaler config (``ray-schema.json``) for an AWS cluster."""

    def node(instance_type: str) -> dict[str, Any]:
        n: dict[str, Any] = {"InstanceType": instance_type}
        if cfg.subnet_id:
            n["SubnetIds"] = [cfg.subnet_id]
        if cfg.security_group_id:
            n["SecurityGroupIds"] = [cfg.security_group_id]
        if cfg.image_id:
            n["ImageId"] = cfg.image_id
        return n

    if cfg.min_workers > cfg.max_workers:
        raise ConfigError(
            f"--min-workers ({cfg.min_workers}) must not exceed --max-workers ({cfg.max_workers})"
        )
    return {
        "cluster_name": cfg.cluster_name,
        "max_workers": cfg.max_workers,
        "upscaling_speed": 1.0,
        "idle_timeout_minutes": 5,
        "provider": {"type": "aws", "region": cfg.region, "cache_stopped_nodes": False},
        "auth": {"ssh_user": cfg.ssh_user},
        "available_node_types": {
            "ray.head.default": {
                "resources": {},
                "node_config": node(cfg.head_instance_type or cfg.instance_type),
            },
            "ray.worker.default": {
                "min_workers": cfg.min_workers,
                "max_workers": cfg.max_workers,
                "resources": {},
                "node_config": node(cfg.instance_type),
            },
        },
        "head_node_type": "ray.head.default",
        "file_mounts": {},
        "setup_commands": [f"pip install '{cfg.despina_requirement}'"],
        "head_start_ray_commands": [
            "ray stop",
            "ray start --head --port=6379 --include-dashboard=false "
            "--autoscaling-config=~/ray_bootstrap_config.yaml",
        ],
        "worker_start_ray_commands": [
            "ray stop",
            "ray start --address=$RAY_HEAD_IP:6379",
        ],
    }
