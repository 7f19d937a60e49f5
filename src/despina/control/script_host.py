"""A user script in its own process, with only the environment its task group declares.

The worker that runs a task holds the store's URL and, when outputs are sealed, the
master key; a user's script must see neither. So the worker starts ``python -m
despina.control.script_host FD PARENT_PID`` with a clean environment (``PATH``, ``HOME``,
locale, temp dir, and the group's ``env``), sends it the task over a socket pair, relays
its progress to the store and writes the rows it returns (sealed, like every output).
The script's stdout and stderr go to the task's log; the child exits when its worker does.
"""

from __future__ import annotations

import io
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import traceback
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import pyarrow as pa

from despina.core.errors import TaskError

# What a script may inherit from the worker besides its group's env: nothing secret.
PASSED_THROUGH = ("PATH", "HOME", "USER", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR")
THREAD_LIMITS = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


def script_env(declared: dict[str, str]) -> dict[str, str]:
    env = {k: os.environ[k] for k in PASSED_THROUGH if k in os.environ}
    return {**env, **THREAD_LIMITS, **declared}


def run_in_child(job: dict[str, Any], env: dict[str, str], log_path: Path, ctx: Any) -> Any:
    """Run ``job`` (script, source, partition spec, context fields) in a child process;
    progress goes to ``ctx.progress``; returns ``("rows", table)`` or ``("main", value)``."""
    mine, theirs = socket.socketpair()
    fd = theirs.fileno()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "despina.control.script_host", str(fd), str(os.getpid())],
            pass_fds=[fd],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env=env,
            cwd=env.get("HOME") if env.get("HOME") and Path(env["HOME"]).is_dir() else None,
        )
    theirs.close()
    conn = Connection(os.dup(mine.fileno()))
    mine.close()
    try:
        conn.send(job)
        while True:
            try:
                kind, *rest = conn.recv()
            except (EOFError, OSError):
                code = proc.wait()
                raise TaskError(f"the script's process died (exit code {code})") from None
            if kind == "progress":
                ctx.progress(rest[0], rest[1])
            elif kind == "metrics":
                ctx.metrics.update(rest[0])
            elif kind == "rows":
                table = pa.ipc.open_stream(conn.recv_bytes()).read_all()
                return "rows", table
            elif kind == "main":
                return "main", rest[0]
            elif kind == "error":
                raise TaskError(rest[0])
    finally:
        conn.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _watch_parent(parent_pid: int) -> None:
    while True:
        time.sleep(0.5)
        if os.getppid() != parent_pid:
            os._exit(3)


def child_main(conn: Connection, parent_pid: int) -> None:
    from despina.control.partitions import load_batch
    from despina.control.runtime import TaskContext, load_script, to_table

    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True).start()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    job = conn.recv()
    ctx = TaskContext(
        **job["context"],
        logger=logging.getLogger("despina.task"),
        _report=lambda d, t: conn.send(("progress", d, t)),
    )
    try:
        module = load_script(job["script"])
        if hasattr(module, "process"):
            batch = load_batch(job["source"], job["spec"])
            table = to_table(module.process(batch, ctx))
            conn.send(("metrics", ctx.metrics))
            sink = io.BytesIO()
            with pa.ipc.new_stream(sink, table.schema) as writer:
                writer.write_table(table)
            conn.send(("rows",))
            conn.send_bytes(sink.getvalue())
        elif hasattr(module, "main"):
            result = module.main(ctx)
            conn.send(("metrics", ctx.metrics))
            if result is not None and not isinstance(result, (list, tuple, int, float, str)):
                result = str(result)
            conn.send(("main", list(result) if isinstance(result, tuple) else result))
        else:
            raise TaskError(
                f"script {job['script']} defines neither process(batch, context) nor main(context)"
            )
    except BaseException as exc:
        traceback.print_exc()
        reason = str(exc) if isinstance(exc, TaskError) else f"{type(exc).__name__}: {exc}"
        conn.send(("error", reason))
    finally:
        sys.stdout.flush()
        sys.stderr.flush()


if __name__ == "__main__":
    child_main(Connection(int(sys.argv[1])), int(sys.argv[2]))
