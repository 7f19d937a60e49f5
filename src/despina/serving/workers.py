"""Several server processes on one port, each listening on a socket of its own.

uvicorn's ``--workers`` shares one listening socket, and whichever process wakes first
accepts every connection then waiting: ``wrk -c32`` against ``despina serve --workers 2``
often put all 32 connections on one process, so the second process and its model sat
idle. With ``SO_REUSEPORT`` each process has its own socket and the kernel spreads new
connections across them by hash.

``SO_REUSEPORT`` would also let a second ``despina serve --workers N`` on the same port
share it silently, each answering part of the traffic; a lock file per address, held by
the parent process while it runs, refuses the second one instead.
"""

from __future__ import annotations

import multiprocessing
import os
import re
import signal
import socket
import tempfile
import time
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import IO, Any

from despina.core.errors import ConfigError
from despina.serving.peers import create_peers_file
from despina.serving.settings import PEER_SLOT, PEERS_FILE


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio turns Nagle's algorithm off only on sockets that say
    # they are TCP, and with it on a lone request waited 40 ms for a delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port} ({exc}); choose another --port") from exc
    sock.listen(2048)
    return sock


def claim_address(host: str, port: int) -> IO[bytes]:
    """Lock ``host:port`` for this process's servers (released when the file is closed or
    the process ends, however it ends); ConfigError if another server holds it."""
    import fcntl

    # Per user: SO_REUSEPORT shares a port only among sockets of one user anyway.
    name = re.sub(r"[^A-Za-z0-9.]", "_", f"{os.getuid()}-{host}_{port}")
    path = Path(tempfile.gettempdir()) / f"despina-serve-{name}.lock"
    try:
        handle = path.open("ab")
    except OSError as exc:
        raise ConfigError(f"cannot open the port's lock file {path} ({exc})") from exc
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise ConfigError(
            f"another despina serve --workers already listens on {host}:{port}; stop it or "
            "choose another --port"
        ) from None
    return handle


def _serve(host: str, port: int, options: dict[str, Any], peers: str, slot: int) -> None:
    """One worker process: its own socket, one uvicorn server, its byte of the peers
    file (see :mod:`despina.serving.peers`)."""
    import uvicorn

    os.environ.update({PEERS_FILE: peers, PEER_SLOT: str(slot)})
    sock = _listen(host, port)
    uvicorn.Server(uvicorn.Config(**options)).run(sockets=[sock])


def run_workers(workers: int, host: str, port: int, **options: Any) -> None:
    """Run ``workers`` uvicorn servers with ``options`` (``uvicorn.Config`` keywords) on
    ``host:port`` until SIGTERM or SIGINT; a worker that dies is started again."""
    if not hasattr(socket, "SO_REUSEPORT"):
        raise ConfigError("this platform has no SO_REUSEPORT; run one process (--workers 1)")
    claim = claim_address(host, port)
    try:
        _listen(host, port).close()  # a port taken by another program: say so before forking
        fd, peers = tempfile.mkstemp(prefix="despina-serve-peers-")
        os.close(fd)
        try:
            create_peers_file(Path(peers), workers)
            _supervise(workers, host, port, options, peers)
        finally:
            Path(peers).unlink(missing_ok=True)
    finally:
        claim.close()


def _supervise(workers: int, host: str, port: int, options: dict[str, Any], peers: str) -> None:
    ctx = multiprocessing.get_context("spawn")
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}

    def start(slot: int) -> tuple[BaseProcess, float]:
        proc = ctx.Process(target=_serve, args=(host, port, options, peers, slot), daemon=False)
        proc.start()
        return proc, time.monotonic()

    procs = [start(i) for i in range(workers)]  # each with when it started
    try:
        while not stopping:
            time.sleep(0.5)
            for i, (proc, since) in enumerate(procs):
                if proc.is_alive() or stopping:
                    continue
                if time.monotonic() - since < 10:  # it cannot start at all
                    raise ConfigError(
                        f"a server process exited while starting (exit code {proc.exitcode}); "
                        "its error is above"
                    )
                procs[i] = start(i)
    finally:
        for proc, _ in procs:
            proc.terminate()  # SIGTERM: uvicorn finishes the requests in progress
        for proc, _ in procs:
            proc.join(30)
            if proc.is_alive():
                proc.kill()
        for s, handler in previous.items():
            signal.signal(s, handler)
