"""A user script in its own process, with only the environment its task group declares.

The worker that runs a task holds the store's URL and, when outputs are sealed, the
master key; a user's script must see neither. Each worker keeps one *script host*: a
process started with a clean environment (``PATH``, ``HOME``, locale, temp dir) that
imports the stack once and then forks a fresh child per script task (a fork costs
milliseconds where a new interpreter imports the whole stack again: many small tasks).
The child takes the group's ``env``, sends its log to the task's log file, runs the
script, and sends progress, metrics and rows back over the host's socket; the worker
writes the rows (sealed, like every output). Nothing secret ever enters the host, so
nothing secret can be inherited by a child. Host and child exit when their parent does.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import resource
import signal
import socket
import subprocess
import sys
import traceback
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import pyarrow as pa

from despina.control.runtime import TaskContext, load_script, to_table
from despina.core.errors import TaskError
from despina.core.processes import THREAD_LIMITS, die_with_parent

#: A script task's memory (address space) when its group sets none (--memory-gb).
DEFAULT_TASK_MEMORY_GB = 4.0
# What a script may inherit from the worker besides its group's env: nothing secret.
PASSED_THROUGH = ("PATH", "HOME", "USER", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR")


def script_env(declared: dict[str, str]) -> dict[str, str]:
    env = {k: os.environ[k] for k in PASSED_THROUGH if k in os.environ}
    return {**env, **THREAD_LIMITS, **declared}


class ScriptHost:
    """The worker's side: start the host on first use, run one job at a time on it."""

    def __init__(self) -> None:
        mine, theirs = socket.socketpair()
        fd = theirs.fileno()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "despina.control.script_host", str(fd), str(os.getpid())],
            pass_fds=[fd],
            stdin=subprocess.DEVNULL,
            env=script_env({}),
        )
        theirs.close()
        self.conn = Connection(os.dup(mine.fileno()))
        mine.close()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def run(self, job: dict[str, Any], env: dict[str, str], log_path: Path, ctx: Any) -> Any:
        """Run ``job`` in a forked child; progress goes to ``ctx``; returns ``("rows",
        table)`` or ``("main", value)``, or raises TaskError with the script's reason."""
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self.conn.send({"job": job, "env": env, "log": str(log_path)})
        outcome: Any = None
        while True:
            try:
                kind, *rest = self.conn.recv()
            except (EOFError, OSError):
                raise TaskError("the script host died; the worker will start a new one") from None
            if kind == "progress":
                ctx.progress(rest[0], rest[1])
            elif kind == "metrics":
                ctx.metrics.update(rest[0])
            elif kind == "rows":
                outcome = ("rows", pa.ipc.open_stream(self.conn.recv_bytes()).read_all())
            elif kind == "main":
                outcome = ("main", rest[0])
            elif kind == "error":
                outcome = TaskError(rest[0])
            elif kind == "exit":  # the host reaped the child: the job is over
                if isinstance(outcome, TaskError):
                    raise outcome
                if outcome is None:
                    raise TaskError(
                        f"the script's process died (exit code {rest[0]}); a signal such as "
                        f"-9 or -6 may be its memory limit ({rest[1]}; raise --memory-gb)"
                    )
                return outcome


_host: ScriptHost | None = None


def run_in_child(job: dict[str, Any], env: dict[str, str], log_path: Path, ctx: Any) -> Any:
    """Run a script job on this process's script host (started, or restarted, as needed)."""
    global _host
    if _host is None or not _host.alive():
        _host = ScriptHost()
    return _host.run(job, env, log_path, ctx)


# ---- the host and its children --------------------------------------------------------
def _child(conn: Connection, msg: dict[str, Any]) -> None:
    """In the forked child: take the group's env and the task's log, run the script."""
    from despina.control.partitions import load_batch

    os.setsid()  # its own process group: the host kills it and all it started as one
    die_with_parent(signal.SIGKILL, msg["host"])
    limit = msg["job"].get("memory_bytes")
    if limit:  # a script over it gets MemoryError (or dies), never the worker
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    os.environ.clear()
    os.environ.update(msg["env"])
    fd = os.open(msg["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )
    job = msg["job"]
    ctx = TaskContext(
        **job["context"],
        logger=logging.getLogger("despina.task"),
        _report=lambda d, t: conn.send(("progress", d, t)),
    )
    try:
        module = load_script(job["script"])
        if hasattr(module, "process"):
            batch = load_batch(ctx.source, job["spec"])
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
        if isinstance(exc, MemoryError):
            reason = f"the script went over its memory limit ({_gib(limit)}; raise --memory-gb)"
        conn.send(("error", reason))
    finally:
        sys.stdout.flush()
        sys.stderr.flush()


def _gib(limit: int | None) -> str:
    return f"{limit / 2**30:g} GiB" if limit else "none set"


def host_main(conn: Connection, parent_pid: int) -> None:
    """The host's loop: receive a job, fork a child for it, report its exit code. When a
    job ends, whatever the script left running in its process group is killed; when the
    worker dies (timeout, cancel, crash), the kernel tells the host, which kills the
    running job's group first."""
    running: list[int] = []

    def worker_died(*_: Any) -> None:
        for pid in running:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        os._exit(3)

    signal.signal(signal.SIGTERM, worker_died)
    die_with_parent(signal.SIGTERM, parent_pid)
    import despina.control.partitions  # noqa: F401 - imported once here, shared by every fork

    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        msg["host"] = os.getpid()
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                _child(conn, msg)
            except BaseException:
                code = 1
            finally:
                os._exit(code)
        running.append(pid)
        _, status = os.waitpid(pid, 0)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)  # a grandchild it left behind goes with it
        running.remove(pid)
        code = os.waitstatus_to_exitcode(status)
        conn.send(("exit", code, _gib(msg["job"].get("memory_bytes"))))


if __name__ == "__main__":
    host_main(Connection(int(sys.argv[1])), int(sys.argv[2]))
