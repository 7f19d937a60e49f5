import despina


def test_public_api_is_pinned() -> None:
    assert sorted(despina.__all__) == sorted(
        [
            "AuditConfig",
            "AuditReport",
            "CheckError",
            "ClusterSpec",
            "ConfigError",
            "ConflictError",
            "ControlPlane",
            "DataError",
            "DespinaError",
            "GroupSpec",
            "ModelError",
            "ModelConfig",
            "NotFoundError",
            "PathEscapeError",
            "StateError",
            "TaskError",
            "TrainConfig",
            "__version__",
            "audit",
            "optimize",
        ]
    )
