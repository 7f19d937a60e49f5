"""Run a plane in DESPINA_HOME=argv[1], one group whose script attacks the plane, and print
what each attack got as JSON. The tests start it as root and as an unprivileged user.

``NO_LANDLOCK=1`` first makes the kernel's Landlock calls fail in this process and all it
starts (a seccomp filter), as on a kernel without Landlock.
"""

from __future__ import annotations

import errno
import json
import os
import platform
import socket
import struct
import sys
from pathlib import Path

from despina.control.models import ClusterSpec, GroupSpec
from despina.control.plane import ControlPlane
from tests.control.fixtures import ROWS_SCRIPT, make_settings, write_files

ATTACKS = """
import os, signal, socket, sqlite3, tempfile


def _try(name, fn):
    try:
        fn()
        return {"attack": name, "outcome": "ALLOWED"}
    except Exception as exc:
        return {"attack": name, "outcome": type(exc).__name__}


def process(batch, context):
    env = os.environ
    server, host = int(env["SERVER_PID"]), os.getppid()
    home = env["HOME_DIR"]
    rows = [
        _try("read the store", lambda: open(env["STORE"], "rb").read(1)),
        _try("query the store", lambda: sqlite3.connect(env["STORE"]).execute(
            "select count(*) from users").fetchall()),
        _try("read the master key", lambda: open(env["KEY"], "rb").read()),
        _try("read another group's output", lambda: open(env["OTHER"], "rb").read(1)),
        _try("list Despina's home", lambda: os.listdir(home)),
        _try("write into Despina's home", lambda: open(f"{home}/planted", "w").write("x")),
        _try("read the server's environment", lambda: open(f"/proc/{server}/environ").read()),
        _try("read the server's command line", lambda: open(f"/proc/{server}/cmdline").read()),
        _try("read the server's memory", lambda: open(f"/proc/{server}/mem", "rb").read(1)),
        _try("read the script host's environment", lambda: open(f"/proc/{host}/environ").read()),
        _try("list processes", lambda: os.listdir("/proc")),
        _try("signal the server", lambda: os.kill(server, signal.SIGCONT)),
        _try("signal the script host", lambda: os.kill(host, signal.SIGCONT)),
        _try("connect to a local TCP service",
             lambda: socket.create_connection(("127.0.0.1", int(env["PORT"])), timeout=5)),
        _try("open a Unix-domain socket", lambda: socket.socket(socket.AF_UNIX)),
        _try("read /etc/shadow", lambda: open("/etc/shadow").read()),
        _try("write outside its folders", lambda: open(env["PLANT"], "w").write("x")),
    ]
    # What it may do: read its input, write its output folder and its temp folder.
    sizes = sum(len(open(p, "rb").read()) for p in batch)
    with open(os.path.join(context.output, "mine.txt"), "w") as fh:
        fh.write("ok")
    with tempfile.NamedTemporaryFile() as fh:
        fh.write(b"ok")
    import decimal, json  # modules the host never imported: the runtime stays readable
    rows.append({"attack": "own work", "outcome": f"read {sizes} bytes"})
    return rows
"""


def block_landlock() -> None:
    """A seccomp filter: Landlock's syscalls fail with ENOSYS, everything else passes."""
    import ctypes

    if platform.machine() not in ("x86_64", "aarch64"):
        raise SystemExit("NO_LANDLOCK needs x86_64 or aarch64")
    program = [
        (0x20, 0, 0, 0),  # load the syscall number
        (0x35, 0, 3, 444),  # below landlock_create_ruleset: allow
        (0x35, 2, 0, 447),  # above landlock_restrict_self: allow
        (0x06, 0, 0, 0x00050000 | errno.ENOSYS),
        (0x06, 0, 0, 0x7FFF0000),
        (0x06, 0, 0, 0x7FFF0000),
    ]
    code = ctypes.create_string_buffer(b"".join(struct.pack("HBBI", *i) for i in program))
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.prctl(38, 1, 0, 0, 0) == 0  # no_new_privs
    prog = struct.pack("HxxxxxxP", len(program), ctypes.addressof(code))
    assert libc.prctl(22, 2, prog, 0, 0) == 0, os.strerror(ctypes.get_errno())


def main(home: Path) -> dict[str, object]:
    if os.environ.get("NO_LANDLOCK") == "1":
        block_landlock()
    listener = socket.create_server(("127.0.0.1", 0))
    plane = ControlPlane(make_settings(home))
    try:
        plane.create_cluster(ClusterSpec(name="c", workers=1))
        (home / "rows.py").write_text(ROWS_SCRIPT)
        plane.create_group(
            GroupSpec(name="other", cluster="c", source=str(write_files(home / "d0", 2)),
                      script=str(home / "rows.py"))
        )  # fmt: skip
        (other,) = plane.start_group("other", wait=True)
        (home / "attacks.py").write_text(ATTACKS)
        env = {
            "SERVER_PID": str(os.getpid()),
            "HOME_DIR": str(home),
            "STORE": str(home / "despina.db"),
            "KEY": str(home / "master.key"),
            "OTHER": other.outputs[0] if other.outputs else str(home / "missing"),
            "PORT": str(listener.getsockname()[1]),
            "PLANT": str(home.parent / f"planted-{os.getpid()}"),
        }
        plane.create_group(
            GroupSpec(name="attacks", cluster="c", source=str(write_files(home / "d1", 3)),
                      script=str(home / "attacks.py"), env=env, max_retries=0)
        )  # fmt: skip
        (task,) = plane.start_group("attacks", wait=True)
        outcomes: dict[str, str] = {}
        if task.outputs:
            table = plane.group_result("attacks").to_pydict()
            outcomes = dict(zip(table["attack"], table["outcome"], strict=True))
        return {
            "state": task.state.value,
            "reason": task.exit_reason,
            "log": plane.task_logs(task.id)[0],
            "outcomes": outcomes,
            "output_files": sorted(p.name for p in (home / "outputs" / "attacks").glob("*")),
            "planted": Path(env["PLANT"]).exists() or (home / "planted").exists(),
        }
    finally:
        plane.close()
        listener.close()


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]))))
