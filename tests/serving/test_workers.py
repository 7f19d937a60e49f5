"""``run_workers``: several server processes on one port, each with its own socket."""

from __future__ import annotations

import socket
import tempfile
from pathlib import Path

import pytest

from despina.core.errors import ConfigError
from despina.serving.workers import claim_address, run_workers


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
    peers = set(Path(tempfile.gettempdir()).glob("despina-serve-peers-*"))
    with pytest.raises(ConfigError, match="exited while starting"):
        run_workers(2, "127.0.0.1", port, app="despina_no_such_module:app", log_level="error")
    # The processes' shared busy bytes (despina.serving.peers) go with them.
    assert set(Path(tempfile.gettempdir()).glob("despina-serve-peers-*")) == peers


def test_a_second_multi_process_server_on_the_same_port_is_refused() -> None:
    """SO_REUSEPORT would let it share the port silently, each answering some requests."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    first = claim_address("127.0.0.1", port)  # what a running run_workers holds
    try:
        with pytest.raises(ConfigError, match="another despina serve --workers already listens"):
            run_workers(2, "127.0.0.1", port, app="despina.serving.api:serve_from_env")
    finally:
        first.close()
    claim_address("127.0.0.1", port).close()  # free again once the first one is gone
