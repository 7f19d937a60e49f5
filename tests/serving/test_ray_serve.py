"""A deployment on a Ray cluster: Ray Serve replicas behind the same routes and errors."""

from __future__ import annotations

from pathlib import Path

from despina.control.models import ClusterSpec, DeploymentSpec, Resources
from despina.control.plane import ControlPlane
from despina.data.sources import digits_arrays
from tests.control.fixtures import ThreadServer
from tests.serving.fixtures import png
from tests.waiting import wait_for


def test_ray_cluster_deployment_runs_replicas_through_ray_serve(
    ray_session: None, plane: ControlPlane, home_model: Path
) -> None:
    from ray import serve

    plane.create_cluster(
        ClusterSpec(name="ray", backend="ray", address="auto", resources=Resources(cpus=2))
    )
    plane.create_deployment(
        DeploymentSpec(name="digits", model=str(home_model), cluster="ray", replicas=2)
    )
    server = ThreadServer(plane)
    try:
        with server.http(timeout=60) as client:
            wait_for(lambda: client.get("/ready").status_code == 200, 180, 0.5, "/ready")
            [listed] = client.get("/v1/deployments").json()
            assert (listed["state"], listed["cluster"], listed["replicas"]) == ("running", "ray", 2)
            app = serve.status().applications["despina-digits"]
            [status] = app.deployments.values()
            assert status.replica_states.get("RUNNING") == 2

            images, labels = digits_arrays()
            right = 0
            for i in range(0, 200, 10):
                r = client.post(
                    "/v1/deployments/digits/predict", files={"file": ("a.png", png(images[i]))}
                )
                assert r.status_code == 200, r.text
                right += r.json()["objects"][0]["label"] == str(labels[i])
            assert right >= 18
            bad = client.post(
                "/v1/deployments/digits/predict", files={"file": ("a.png", b"not an image")}
            )
            assert bad.status_code == 422 and "not a readable image" in bad.json()["detail"]
            assert bad.json()["error"] == "InputError"
            assert client.get("/v1/deployments/digits/drift").json()["window"] >= 1
    finally:
        server.stop()
    assert "despina-digits" not in serve.status().applications
