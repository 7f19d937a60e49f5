"""Confine a user's script to its own input, output and log, as root or as anyone.

Three kernel mechanisms, applied in the script's process right before its code runs,
and irreversible from inside it (the way Chromium, Firefox and systemd sandbox code
they do not trust; none needs root, a helper binary or a container runtime):

- **no capabilities, no new privileges**: a script run by root keeps uid 0 but loses
  every capability (no raw sockets, no module loading, no reading files it does not
  own), and no setuid program can give any back;
- **Landlock**: the files it may read (the Python runtime, system libraries, its
  partition's input) and the one folder it may write; every other path, Despina's home
  with the store, the key and other groups' outputs included, is refused. Landlock also
  keeps it from tracing or signalling any process outside its sandbox (so
  ``/proc/PID/environ`` and ``/proc/PID/mem`` of the server and worker are closed) and,
  unless the operator allows the network, from opening TCP connections;
- **seccomp**: no new Unix-domain sockets (a local database's socket file, Landlock's
  one gap) and no io_uring (which would bypass seccomp).

Landlock ABI 6 (Linux 6.12) is the least that gives all of this; :func:`unavailable`
says why a machine falls short, and the dispatcher then refuses scripts unless the
operator opts in to running them unconfined (``DESPINA_UNSAFE_SCRIPTS=1``).
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import struct
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from despina.core.errors import TaskError

#: Landlock's ABI with signal and abstract-socket scoping: the least this sandbox needs.
MIN_LANDLOCK_ABI = 6

# Syscall numbers: Landlock's and io_uring's are the same on every architecture.
_LANDLOCK_CREATE, _LANDLOCK_ADD_RULE, _LANDLOCK_RESTRICT = 444, 445, 446
_IO_URING_SETUP = 425
# (seccomp audit arch, socket syscall number) per machine.
_ARCH = {"x86_64": (0xC000003E, 41), "aarch64": (0xC00000B7, 198)}

_PR_SET_NO_NEW_PRIVS, _PR_SET_SECCOMP, _PR_CAPBSET_DROP, _PR_CAP_AMBIENT = 38, 22, 24, 47
_SECCOMP_MODE_FILTER = 2

# Landlock filesystem rights (uapi/linux/landlock.h).
_EXECUTE, _WRITE_FILE, _READ_FILE, _READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
_TRUNCATE, _IOCTL_DEV = 1 << 14, 1 << 15
_ALL_FS = (1 << 16) - 1
_FILE_RIGHTS = _EXECUTE | _WRITE_FILE | _READ_FILE | _TRUNCATE | _IOCTL_DEV
_READ = _EXECUTE | _READ_FILE | _READ_DIR
_NET_BIND_TCP, _NET_CONNECT_TCP = 1 << 0, 1 << 1
_SCOPE_ABSTRACT_UNIX, _SCOPE_SIGNAL = 1 << 0, 1 << 1

# What every Python process reads: system libraries, never written. Of /etc and /sys only
# what libraries look up (a script started by root keeps uid 0, so /etc/shadow and its
# like must stay outside), and single files of /proc (CPU and memory size).
SYSTEM_READ = ("/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin")
ETC_READ = tuple(
    f"/etc/{name}"
    for name in (
        "ld.so.cache", "localtime", "timezone", "passwd", "group", "nsswitch.conf", "hosts",
        "host.conf", "resolv.conf", "gai.conf", "protocols", "services", "mime.types",
        "os-release", "ssl/certs", "ssl/openssl.cnf", "ca-certificates", "fonts",
    )
)  # fmt: skip
PROC_FILES = ("/proc/cpuinfo", "/proc/meminfo", "/proc/stat", "/sys/devices/system/cpu",
              "/sys/fs/cgroup")  # fmt: skip
DEVICES = ("/dev/null", "/dev/zero", "/dev/random", "/dev/urandom")


@dataclass(frozen=True)
class Confinement:
    """What a confined script may touch: ``read`` (files or folders, read-only) and
    ``write`` (folders it may change), and whether it may open TCP connections."""

    read: tuple[str, ...]
    write: tuple[str, ...]
    network: bool = False


class _RulesetAttr(ctypes.Structure):
    _fields_ = [
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    ]


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    return libc


def landlock_abi() -> int:
    """The kernel's Landlock ABI version; 0 where there is none (or not Linux)."""
    if not sys.platform.startswith("linux"):
        return 0
    version = _libc().syscall(_LANDLOCK_CREATE, None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    return max(int(version), 0)


def unavailable() -> str | None:
    """Why scripts cannot be confined on this machine; None when they can."""
    if platform.machine() not in _ARCH:
        return f"the sandbox supports x86_64 and aarch64 Linux, not {platform.machine()}"
    abi = landlock_abi()
    if abi < MIN_LANDLOCK_ABI:
        return (
            f"the kernel's Landlock ABI is {abi or 'absent'}; confining scripts needs "
            f"ABI {MIN_LANDLOCK_ABI} (Linux 6.12 or newer with Landlock enabled)"
        )
    return None


def runtime_paths(exclude: Iterable[Path]) -> tuple[str, ...]:
    """Folders the Python runtime reads: prefixes and import path, except any folder
    that holds one of ``exclude`` (Despina's home: a read rule covers everything below)."""
    guarded = [p.resolve() for p in exclude]
    found: list[str] = []
    candidates = [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix]
    candidates += [p for p in sys.path if p and Path(p).resolve() != Path.cwd().resolve()]
    for entry in candidates:
        path = Path(entry).resolve()
        if not path.is_dir() or str(path) in found:
            continue
        if any(g == path or path in g.parents for g in guarded):
            continue
        found.append(str(path))
    return tuple(found)


def confine(rules: Confinement) -> None:
    """Confine this process (and all it starts) for good; raise TaskError if any step
    fails, so that a script never runs half-confined."""
    libc = _libc()
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise TaskError(_failed("set no_new_privs"))
    _drop_capabilities(libc)
    _restrict_paths(libc, rules)
    _filter_syscalls(libc)


def _failed(step: str) -> str:
    err = ctypes.get_errno()
    return f"could not confine the script ({step}: {os.strerror(err)}); it was not run"


def _drop_capabilities(libc: ctypes.CDLL) -> None:
    last = int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    for cap in range(last + 1):  # the bounding set: root cannot regain them by exec
        if libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 and ctypes.get_errno() != errno.EPERM:
            raise TaskError(_failed("drop the bounding set"))
    libc.prctl(_PR_CAP_AMBIENT, 4, 0, 0, 0)  # PR_CAP_AMBIENT_CLEAR_ALL
    header = struct.pack("Ii", 0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
    data = bytes(24)  # effective, permitted, inheritable: all empty
    if libc.capset(header, data) != 0:
        raise TaskError(_failed("drop capabilities"))


def _restrict_paths(libc: ctypes.CDLL, rules: Confinement) -> None:
    handled = _ALL_FS  # every right ABI 6 knows: what is not allowed below is refused
    attr = _RulesetAttr(
        handled_access_fs=handled,
        handled_access_net=0 if rules.network else _NET_BIND_TCP | _NET_CONNECT_TCP,
        scoped=_SCOPE_ABSTRACT_UNIX | _SCOPE_SIGNAL,
    )
    ruleset = libc.syscall(
        _LANDLOCK_CREATE, ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr)), 0
    )
    if ruleset < 0:
        raise TaskError(_failed("create a Landlock ruleset"))
    try:
        own = f"/proc/{os.getpid()}"
        reads = (*SYSTEM_READ, *ETC_READ, *PROC_FILES, own, *rules.read)
        for path in reads:
            _allow(libc, ruleset, path, _READ)
        for path in DEVICES:
            _allow(libc, ruleset, path, _READ | _WRITE_FILE)
        for path in ("/dev/shm", *rules.write):  # shared memory: torch's data loaders
            _allow(libc, ruleset, path, handled)
        if libc.syscall(_LANDLOCK_RESTRICT, ruleset, 0) != 0:
            raise TaskError(_failed("enforce the Landlock ruleset"))
    finally:
        os.close(ruleset)


def _allow(libc: ctypes.CDLL, ruleset: int, path: str, access: int) -> None:
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except FileNotFoundError:
        return  # /lib32 on a machine without it: nothing to allow
    try:
        if not os.path.isdir(path):
            access &= _FILE_RIGHTS
        rule = _PathBeneath(allowed_access=access, parent_fd=fd)
        if libc.syscall(_LANDLOCK_ADD_RULE, ruleset, 1, ctypes.byref(rule), 0) != 0:
            raise TaskError(_failed(f"allow {path}"))
    finally:
        os.close(fd)


def _filter_syscalls(libc: ctypes.CDLL) -> None:
    audit_arch, nr_socket = _ARCH[platform.machine()]
    deny_eperm = 0x00050000 | errno.EPERM  # SECCOMP_RET_ERRNO
    deny_eacces = 0x00050000 | errno.EACCES
    allow = 0x7FFF0000
    ld, jeq, jge, ret = 0x20, 0x15, 0x35, 0x06  # BPF_LD|W|ABS, JMP|JEQ|K, JMP|JGE|K, RET|K
    program = [
        (ld, 0, 0, 4),  # seccomp_data.arch
        (jeq, 1, 0, audit_arch),
        (ret, 0, 0, deny_eperm),  # another ABI (32-bit calls): nothing allowed
        (ld, 0, 0, 0),  # seccomp_data.nr
        (jge, 0, 1, 0x40000000),  # x32 numbers alias the checks below
        (ret, 0, 0, deny_eperm),
        (jeq, 0, 1, _IO_URING_SETUP),
        (ret, 0, 0, deny_eperm),
        (jeq, 0, 3, nr_socket),
        (ld, 0, 0, 16),  # args[0], the address family (low 32 bits)
        (jeq, 0, 1, 1),  # AF_UNIX
        (ret, 0, 0, deny_eacces),
        (ret, 0, 0, allow),
    ]
    filters = b"".join(struct.pack("HBBI", *insn) for insn in program)
    buffer = ctypes.create_string_buffer(filters)
    fprog = struct.pack("HxxxxxxP", len(program), ctypes.addressof(buffer))
    if libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, fprog, 0, 0) != 0:
        raise TaskError(_failed("install the syscall filter"))
