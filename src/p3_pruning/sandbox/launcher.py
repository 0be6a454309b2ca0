"""The sandbox launcher: run as a script (``python -I -S -B launcher.py launch ARGS...``) in the
program's new session, it sets up every available isolation layer in a fresh single-threaded
interpreter and then ``execve``s the sandboxed interpreter on ``bootstrap.py``; ``... launcher.py
sweep UID`` kills every process left running as a throw-away uid.

Standard library only (os, sys, ctypes, resource), and self-contained: under ``-I`` its own
directory is not on ``sys.path``, and a launch costs one bare interpreter start. The parent side
(``runner.py``) imports its constants and ``processes_of``.
"""

from __future__ import annotations

import os
import sys

BOOTSTRAP_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bootstrap.py")

UID_RANGE = (1_000_000_000, 2_000_000_000)  # throw-away uids; nothing on a normal system uses them
NOBODY = 65534
_LAUNCH_FAILED = 125
_PYTHON_FLAGS = ["-S", "-s", "-B"] + (["-P"] if sys.version_info >= (3, 11) else [])
_CLONE_NEWNS = 0x00020000
_CLONE_NEWIPC = 0x08000000
_CLONE_NEWUSER = 0x10000000
_CLONE_NEWNET = 0x40000000
_MS_NOSUID, _MS_NODEV, _MS_BIND, _MS_REC, _MS_PRIVATE = 0x2, 0x4, 0x1000, 0x4000, 0x40000
_SYS_MOUNT_SETATTR = 442  # the same number on x86-64 and arm64
_AT_FDCWD, _AT_RECURSIVE = -100, 0x8000
_MOUNT_ATTR_RDONLY, _MOUNT_ATTR_NOSUID = 0x1, 0x2
_PR_SET_NO_NEW_PRIVS = 38
_TMP_DIRS = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock")


def processes_of(uid: int) -> list[int]:
    """Pids of live (not zombie) processes whose real uid is ``uid`` (a scan of /proc)."""
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/status", "rb") as f:
                text = f.read()
            real_uid = int(text[text.index(b"\nUid:") + 5 :].split(None, 1)[0])
            state = text[text.index(b"\nState:") + 7 :].split(None, 1)[0]
        except (OSError, ValueError, IndexError):
            continue
        if real_uid == uid and state not in (b"Z", b"X"):
            pids.append(int(name))
    return pids


def _libc():
    import ctypes

    return ctypes, ctypes.CDLL(None, use_errno=True)


def _check(ret: int, what: str) -> None:
    if ret != 0:
        import ctypes

        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _interpreter_dirs() -> list[str]:
    """Directories the sandboxed interpreter needs: its installation and its virtualenv."""
    dirs = {os.path.realpath(d) for d in (sys.base_prefix, sys.prefix)}
    dirs.add(os.path.dirname(os.path.realpath(sys.executable)))
    return sorted(d for d in dirs if not any(d.startswith(o + os.sep) for o in dirs if o != d))


def _first_closed_dir(path: str) -> str | None:
    """The topmost directory on ``path`` that other users cannot traverse (e.g. ``/root``)."""
    parts = os.path.realpath(path).split(os.sep)
    for k in range(2, len(parts) + 1):
        d = os.sep.join(parts[:k])
        if not os.stat(d).st_mode & 0o001:
            return d
    return None


def _namespaces(cfg: dict, code: bytes, layers: list[str]) -> None:
    """As root: private network/mount/IPC namespaces, a read-only tree, private tmpfs mounts, and the
    working directory recreated as its own tmpfs holding the program. Appends each active layer to
    ``layers``; raises OSError where a step is refused (the caller then falls back to guards)."""
    ctypes, lib = _libc()
    _check(lib.unshare(_CLONE_NEWNS | _CLONE_NEWNET | _CLONE_NEWIPC), "unshare")
    layers += ["netns", "ipcns"]
    _check(lib.mount(None, b"/", None, _MS_REC | _MS_PRIVATE, None), "make / private")
    # An interpreter under a closed directory (pyenv in /root): cover that directory with an empty
    # tmpfs and bind only the interpreter's own directories back in.
    closed: dict[str, list[str]] = {}
    for d in _interpreter_dirs():
        top = _first_closed_dir(d)
        if top is not None:
            closed.setdefault(top, []).append(d)
    for top, dirs in closed.items():
        handles = [(d, os.open(d, os.O_PATH)) for d in dirs]
        _check(lib.mount(b"tmpfs", top.encode(), b"tmpfs", _MS_NOSUID, b"size=1m,mode=755"), top)
        for d, fd in handles:
            os.makedirs(d, mode=0o755, exist_ok=True)
            src = f"/proc/self/fd/{fd}".encode()
            _check(lib.mount(src, d.encode(), None, _MS_BIND | _MS_REC, None), f"bind {d}")
            os.close(fd)

    class MountAttr(ctypes.Structure):
        _fields_ = [(n, ctypes.c_uint64) for n in ("set", "clr", "prop", "userns")]

    attr = MountAttr(_MOUNT_ATTR_RDONLY | _MOUNT_ATTR_NOSUID, 0, 0, 0)
    lib.syscall.restype = ctypes.c_long
    ro = lib.syscall(
        ctypes.c_long(_SYS_MOUNT_SETATTR),
        ctypes.c_int(_AT_FDCWD),
        b"/",
        ctypes.c_uint(_AT_RECURSIVE),
        ctypes.byref(attr),
        ctypes.c_size_t(ctypes.sizeof(attr)),
    )
    if ro == 0:
        layers.append("readonly_root")
    size = f"size={cfg['file_size_mb']}m,nr_inodes=4096".encode()
    flags = _MS_NOSUID | _MS_NODEV
    for d in _TMP_DIRS:
        if os.path.isdir(d) and not os.path.islink(d):
            _check(lib.mount(b"tmpfs", d.encode(), b"tmpfs", flags, size + b",mode=1777"), d)
    workdir = cfg["workdir"]
    os.makedirs(workdir, exist_ok=True)
    _check(lib.mount(b"tmpfs", workdir.encode(), b"tmpfs", flags, size + b",mode=700"), workdir)
    os.chdir(workdir)
    with open("solution.py", "wb") as f:
        f.write(code)
    os.chmod("solution.py", 0o644)
    layers.append("mountns")


def _set_limits(cfg: dict, extra_processes: int) -> None:
    import resource

    mb = 1 << 20
    limits = {
        resource.RLIMIT_CPU: (cfg["cpu_s"], cfg["cpu_s"] + 1),
        resource.RLIMIT_AS: (cfg["memory_mb"] * mb,) * 2,
        resource.RLIMIT_FSIZE: (cfg["file_size_mb"] * mb,) * 2,
        resource.RLIMIT_NPROC: (cfg["max_processes"] + extra_processes,) * 2,
        resource.RLIMIT_NOFILE: (cfg["max_open_files"],) * 2,
        resource.RLIMIT_CORE: (0, 0),
    }
    for which, (soft, hard) in limits.items():
        _, old_hard = resource.getrlimit(which)
        if old_hard != resource.RLIM_INFINITY:
            soft, hard = min(soft, old_hard), min(hard, old_hard)
        resource.setrlimit(which, (soft, hard))


LAUNCH_ARGS = (
    "kernel",
    "status_fd",
    "workdir",
    "uid",
    "mode",
    "cpu_s",
    "memory_mb",
    "file_size_mb",
    "max_processes",
    "max_open_files",
)


def _launch(argv: list[str]) -> None:
    """Set up every available layer, then exec the bootstrap; report the layers (or the failure)
    to the parent on ``status_fd`` as one line: ``ready L1,L2,...`` or ``error L1,... message``."""
    cfg = dict(zip(LAUNCH_ARGS, argv[: len(LAUNCH_ARGS)], strict=True))
    for k in LAUNCH_ARGS:
        if k not in ("workdir", "mode", "uid"):
            cfg[k] = int(cfg[k])
    uid = int(cfg["uid"]) if cfg["uid"] != "-" else None
    status_fd = cfg["status_fd"]
    os.set_inheritable(status_fd, False)  # closes at exec; stays open if exec fails
    os.umask(0o022)
    layers = ["session", "rlimits", "scrubbed_env"]
    # The real interpreter, resolved before any mount: a virtualenv's python is a link that may sit
    # under /tmp, which the mount namespace replaces with an empty tmpfs.
    python = os.path.realpath(sys.executable)
    try:
        # read before any mount too: a checkout under /tmp disappears behind the private tmpfs
        with open(BOOTSTRAP_PATH, encoding="utf-8") as f:
            bootstrap = f.read()
        if uid is not None and not 0 < uid < 2**32 - 1:
            raise ValueError(f"sandbox uid {uid} is not an ordinary uid")
        workdir = cfg["workdir"]
        with open(os.path.join(workdir, "solution.py"), "rb") as f:
            code = f.read()
        host_dir = os.open(workdir, os.O_RDONLY | os.O_DIRECTORY)
        as_root = os.geteuid() == 0 and uid is not None
        # Same uid as the caller: the process limit counts the caller's processes too.
        extra = 0 if as_root else len(processes_of(os.getuid()))
        try:
            if as_root:
                _namespaces(cfg, code, layers)
            elif cfg["kernel"]:  # unprivileged: a user namespace may still give a private network
                _, lib = _libc()
                _check(lib.unshare(_CLONE_NEWUSER | _CLONE_NEWNET), "unshare")
                layers.append("netns")
        except OSError:
            pass  # refused here (no CAP_SYS_ADMIN, no user namespaces): guards cover the gap
        if "mountns" not in layers:
            os.fchdir(host_dir)
            # Without the mount namespace the interpreter must be reachable as it stands.
            as_root = as_root and all(_first_closed_dir(d) is None for d in _interpreter_dirs())
        if as_root:
            os.chown(".", uid, uid)
        os.close(host_dir)
        _set_limits(cfg, extra)
        if as_root:
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
            if os.getresuid() != (uid,) * 3 or os.getresgid() != (uid,) * 3:
                raise RuntimeError(f"could not switch to uid {uid}")
            layers.append("uid")
        _, lib = _libc()
        if lib.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0:
            layers.append("no_new_privs")
        guards = []
        if "netns" not in layers:
            guards.append("net")
        if "uid" not in layers:
            guards.append("proc")
        if "mountns" not in layers:
            guards.append("fs")
        if guards:
            layers.append("audit_hook:" + "+".join(guards))
        boot = [python, *_PYTHON_FLAGS, "-c", bootstrap, cfg["mode"], ",".join(guards)]
        boot += argv[len(LAUNCH_ARGS) :]
        os.write(status_fd, f"ready {','.join(layers)}\n".encode())
        os.execve(python, boot, dict(os.environ))
    except BaseException as exc:  # report to the parent; never run the program half-contained
        try:
            os.write(status_fd, f"error {','.join(layers)} {type(exc).__name__}: {exc}\n".encode())
        finally:
            os._exit(_LAUNCH_FAILED)


def _sweep_main(uid: int) -> None:
    """As ``uid`` (no capabilities left), SIGKILL every process of that uid until none is left."""
    import signal
    import time

    if not UID_RANGE[0] <= uid < UID_RANGE[1]:
        raise SystemExit(f"refusing to sweep uid {uid}: not a throw-away sandbox uid")
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
    me = os.getpid()
    for _ in range(200):
        try:
            os.kill(-1, signal.SIGKILL)  # every process this uid may signal, except this one
        except ProcessLookupError:
            return
        if not [p for p in processes_of(uid) if p != me]:  # zombies left for their reaper
            return
        time.sleep(0.005)


if __name__ == "__main__":
    if sys.argv[1:2] == ["launch"]:
        _launch(sys.argv[2:])  # never returns: execs the program or exits
    if sys.argv[1:2] != ["sweep"] or len(sys.argv) != 3:
        raise SystemExit("usage: launcher.py launch ARGS... | sweep UID")
    _sweep_main(int(sys.argv[2]))
    raise SystemExit(0)
