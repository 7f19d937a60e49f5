"""A user script in its own process, with only the environment its task group declares.

The worker that runs a task holds the store's URL and, when outputs are sealed, the
master key; a user's script must see neither. Each worker keeps one *script host*: a
process started with a clean environment (``PATH``, ``HOME``, locale, temp dir) that
imports the stack once and then forks a fresh child per script task (a fork costs
milliseconds where a new interpreter imports the whole stack again: many small tasks).
The child takes the group's ``env``, sends its log to the task's log file, reads the
script and its partition, confines itself (:mod:`despina.security.sandbox`: its input,
its output folder and a private temp folder, nothing else), runs the script, and sends
progress, metrics and rows back over the host's socket as JSON and Arrow (never pickle:
the worker must not run what a script sends); the worker writes the rows (sealed, like
every output). Nothing secret ever enters the host, so nothing secret can be inherited
by a child. Host and child exit when their parent does.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import traceback
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import pyarrow as pa

from despina.control.runtime import TaskContext, load_script, read_script, to_table
from despina.control.settings import script_network, unsafe_scripts
from despina.core.config import default_home
from despina.core.errors import TaskError
from despina.core.processes import THREAD_LIMITS, die_with_parent
from despina.security.sandbox import Confinement, confine, runtime_paths, unavailable
from despina.security.settings import key_file_from_env

#: A script task's memory (address space) when its group sets none (--memory-gb).
DEFAULT_TASK_MEMORY_GB = 4.0
# What a script may inherit from the worker besides its group's env: nothing secret.
# TMPDIR: where the host makes each script's private temp folder.
PASSED_THROUGH = (
    "PATH",
    "PYTHONPATH",
    "HOME",
    "USER",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "TMPDIR",
)
UNSAFE_WARNING = (
    "DESPINA_UNSAFE_SCRIPTS=1: this script runs unconfined, with the worker's rights; it "
    "can read the store, the master key and every group's outputs"
)


def script_env(declared: dict[str, str]) -> dict[str, str]:
    env = {k: os.environ[k] for k in PASSED_THROUGH if k in os.environ}
    return {**env, **THREAD_LIMITS, **declared}


def sandbox_for(spec: dict[str, Any], output: Path) -> dict[str, Any]:
    """What a script task may touch (its partition's files, its group's output folder),
    decided by the worker; or a TaskError when this machine cannot confine scripts and
    the operator has not opted in to running them unconfined (``DESPINA_UNSAFE_SCRIPTS``,
    which also turns the sandbox off where it works, for teams that trust every script)."""
    unsafe = unsafe_scripts()
    if not unsafe and (reason := unavailable()):
        raise TaskError(
            f"this worker cannot confine user scripts: {reason}. Run scripts on a worker "
            "that can, or set DESPINA_UNSAFE_SCRIPTS=1 where every script's author is "
            "trusted (a script would run with the worker's rights)"
        )
    if unsafe:
        logging.getLogger(__name__).warning(UNSAFE_WARNING)
    output.mkdir(mode=0o700, parents=True, exist_ok=True)
    files = [p for p in spec.get("paths", []) if "://" not in p] if spec["kind"] == "files" else []
    return {
        "unsafe": unsafe,
        "read": [str(Path(p).resolve()) for p in files],
        "write": [str(output.resolve())],
        "network": script_network(),
        "exclude": [str(p) for p in (default_home(), key_file_from_env()) if p is not None],
    }


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
            kind, *rest = self._receive()
            if kind == "progress":
                done, total = rest
                if not isinstance(done, int) or not isinstance(total, int | None):
                    raise TaskError("the script reported progress that is not a count")
                ctx.progress(done, total)
            elif kind == "metrics":
                if not isinstance(rest[0], dict):
                    raise TaskError("the script reported metrics that are not a mapping")
                ctx.metrics.update(rest[0])
            elif kind == "rows":
                outcome = ("rows", pa.ipc.open_stream(self._receive(raw=True)).read_all())
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

    def _receive(self, raw: bool = False) -> Any:
        """The next message: JSON (a list), or Arrow bytes when ``raw``. What a script
        sends is data to check, never code to run, so nothing here is unpickled."""
        try:
            data = self.conn.recv_bytes()
            if raw:
                return data
            message = json.loads(data)
        except (EOFError, OSError):
            raise TaskError("the script host died; the worker will start a new one") from None
        except ValueError:
            raise TaskError("the script sent the worker a message that is not JSON") from None
        if not isinstance(message, list) or not message or not isinstance(message[0], str):
            raise TaskError("the script sent the worker a malformed message")
        return message


_host: ScriptHost | None = None


def run_in_child(job: dict[str, Any], env: dict[str, str], log_path: Path, ctx: Any) -> Any:
    """Run a script job on this process's script host (started, or restarted, as needed)."""
    global _host
    if _host is None or not _host.alive():
        _host = ScriptHost()
    return _host.run(job, env, log_path, ctx)


# ---- the host and its children --------------------------------------------------------
def _send(conn: Connection, *message: Any) -> None:
    conn.send_bytes(json.dumps(message, default=_plain).encode())


def _plain(value: Any) -> Any:
    """numpy numbers and other values a script may put in its metrics, as JSON."""
    item = getattr(value, "item", None)
    return item() if callable(item) else str(value)


def _child(conn: Connection, msg: dict[str, Any]) -> None:
    """In the forked child: take the group's env and the task's log, read the script and
    its partition, confine this process, run the script."""
    from despina.control.partitions import load_batch

    os.setsid()  # its own process group: the host kills it and all it started as one
    die_with_parent(signal.SIGKILL, msg["host"])
    job = msg["job"]
    limit = job.get("memory_bytes")
    if limit:  # a script over it gets MemoryError (or dies), never the worker
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    os.environ.clear()
    os.environ.update(msg["env"])
    os.environ.update({"TMPDIR": msg["tmp"], "HOME": msg["tmp"]})
    tempfile.tempdir = msg["tmp"]  # the host's choice, cached before the fork, is closed
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
    ctx = TaskContext(
        **job["context"],
        logger=logging.getLogger("despina.task"),
        _report=lambda d, t: _send(conn, "progress", d, t),
    )
    try:
        source = read_script(job["script"])
        batch = load_batch(ctx.source, job["spec"])
        _confine(job["sandbox"], msg["tmp"])
        module = load_script(job["script"], source)
        if hasattr(module, "process"):
            table = to_table(module.process(batch, ctx))
            _send(conn, "metrics", ctx.metrics)
            sink = io.BytesIO()
            with pa.ipc.new_stream(sink, table.schema) as writer:
                writer.write_table(table)
            _send(conn, "rows")
            conn.send_bytes(sink.getvalue())
        elif hasattr(module, "main"):
            result = module.main(ctx)
            _send(conn, "metrics", ctx.metrics)
            if result is not None and not isinstance(result, (list, tuple, int, float, str)):
                result = str(result)
            _send(conn, "main", list(result) if isinstance(result, tuple) else result)
        else:
            raise TaskError(
                f"script {job['script']} defines neither process(batch, context) nor main(context)"
            )
    except BaseException as exc:
        traceback.print_exc()
        reason = str(exc) if isinstance(exc, TaskError) else f"{type(exc).__name__}: {exc}"
        if isinstance(exc, MemoryError):
            reason = f"the script went over its memory limit ({_gib(limit)}; raise --memory-gb)"
        _send(conn, "error", reason)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()


def _confine(sandbox: dict[str, Any], tmp: str) -> None:
    """Confine this child as the worker asked, or say loudly that it runs unconfined."""
    if sandbox.get("unsafe"):
        logging.getLogger("despina.task").warning(UNSAFE_WARNING)
        return
    runtime = runtime_paths(Path(p) for p in sandbox["exclude"])
    confine(
        Confinement(
            read=(*runtime, *sandbox["read"]),
            write=(*sandbox["write"], tmp),
            network=bool(sandbox["network"]),
        )
    )


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
    # Imported once here and shared by every fork: what reading a partition needs (a
    # child importing pandas itself would pay for it on every task).
    import pandas  # noqa: F401
    import pyarrow.csv
    import pyarrow.parquet  # noqa: F401

    import despina.control.partitions  # noqa: F401

    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        msg["host"] = os.getpid()
        msg["tmp"] = tempfile.mkdtemp(prefix="despina-script-")
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
        shutil.rmtree(msg["tmp"], ignore_errors=True)
        code = os.waitstatus_to_exitcode(status)
        _send(conn, "exit", code, _gib(msg["job"].get("memory_bytes")))


if __name__ == "__main__":
    host_main(Connection(int(sys.argv[1])), int(sys.argv[2]))
