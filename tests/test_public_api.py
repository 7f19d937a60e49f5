import despina


def test_public_api_is_pinned() -> None:
    assert sorted(despina.__all__) == sorted(
        [
            "AuditConfig",
            "AuditReport",
            "CheckError",
            "ConfigError",
            "DataError",
            "DespinaError",
            "ModelError",
            "ModelConfig",
            "NotFoundError",
            "PathEscapeError",
            "TrainConfig",
            "__version__",
            "audit",
        ]
    )
