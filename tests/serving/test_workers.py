"""``run_workers``: several server processes on one port, each with its own socket."""

from __future__ import annotations

import socket

import pytest

from despina.core.errors import ConfigError
from despina.serving.workers import run_workers


def test_a_port_another_program_holds_is_refused_before_any_process_starts() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match="choose another --port"):
            run_workers(2, "127.0.0.1", port, app="despina.serving.api:serve_from_env")


def test_a_worker_that_cannot_start_stops_the_server_with_a_clear_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ConfigError, match="exited while starting"):
        run_workers(2, "127.0.0.1", port, app="despina_no_such_module:app", log_level="error")
