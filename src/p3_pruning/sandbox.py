"""Run untrusted Python (model-generated programs) in a contained child process.

Kedro-free and stdlib only. ``run_python(code, ...) -> SandboxResult`` runs one program;
``run_test_cases(code, tests, ...) -> list[TestCaseResult]`` grades a program on APPS-style test
cases, one sandboxed process per case.

How a program is contained (``SandboxResult.isolation`` names the layers that were active):

- always: its own session and process group; resource limits (CPU seconds, address space, file
  size, processes, open files, no core dumps); a scrubbed environment; a fresh working directory; a
  wall-clock deadline after which the parent kills the whole group; stdout/stderr read with a cap.
- as root (as on our machines): a private network namespace (no interface is
  up, so no connection can be made), a private mount namespace in which the whole tree is read-only
  and ``/tmp``, ``/var/tmp``, ``/dev/shm``, ``/run/lock`` and the working directory are small private
  tmpfs mounts (writes there vanish with the program), a private IPC namespace, and a throw-away
  uid/gid used by no other process with ``no_new_privs`` set. The child can neither signal the parent
  nor read other processes' ``/proc`` entries, the process limit counts its processes alone, and any
  process that escaped its group (``setsid``) is killed afterwards by a sweep over that uid.
- where a kernel layer is missing (not root, no namespaces): an audit hook in the child's bootstrap
  blocks what the missing layer would have stopped (sockets, process creation, signals to other
  processes, writes outside the working directory, other processes' ``/proc``, ``ctypes``). This is
  a Python-level guard and weaker than the kernel layers.

The launcher is this very file run as a script (``python -I -S sandbox.py launch ARGS``): it sets up
the layers in a fresh single-threaded interpreter and then ``execve``s the sandboxed interpreter
(``python -S -s -B -P -c BOOTSTRAP``), so the caller never runs Python code between ``fork`` and
``exec`` (safe in processes with threads, e.g. torch). The sandboxed interpreter sees the standard
library only (no site-packages).
"""

from __future__ import annotations

import os
import sys

_RESULT_MARK = "\x1ep3-sandbox-result "  # prefixes the JSON return value in call mode

# --------------------------------------------------------------------------------------------------
# The bootstrap that runs inside the sandboxed interpreter (``python -c``). Arguments:
# mode ("exec" | "call"), comma-separated guards, then the program's argv.

_BOOTSTRAP = r"""
import builtins, os, sys
builtins.exit = builtins.quit = sys.exit  # -S skips site, which defines them
_mode, _guards = sys.argv[1], set(filter(None, sys.argv[2].split(",")))
sys.argv = ["solution.py"] + sys.argv[3:]
_workdir = os.path.realpath(os.getcwd())
_self_pid = os.getpid()


class SandboxBlockedError(PermissionError):
    pass


def _install_guards(guards):
    def deny(what):
        raise SandboxBlockedError("sandbox: " + what + " is blocked")

    def no_pidfd(*args, **kwargs):
        deny("signalling another process (pidfd)")

    if "proc" in guards:  # these raise no audit event, and a pidfd reaches any process
        import _signal, posix, signal
        for module, name in ((os, "pidfd_open"), (posix, "pidfd_open"),
                             (signal, "pidfd_send_signal"), (_signal, "pidfd_send_signal")):
            if hasattr(module, name):
                setattr(module, name, no_pidfd)

    busy = []
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
    proc_self = ("/proc/self", "/proc/thread-self", "/proc/%d" % _self_pid)
    forking = {"os.fork", "os.forkpty", "os.exec", "os.posix_spawn", "os.spawn", "os.system",
               "subprocess.Popen", "pty.spawn"}
    path_events = {"os.remove", "os.rename", "os.rmdir", "os.mkdir", "os.symlink", "os.link",
                   "os.chmod", "os.chown", "os.truncate", "os.utime", "shutil.rmtree",
                   "shutil.move"}

    devices = ("/dev/null", "/dev/stdout", "/dev/stderr")

    def outside(path):
        if isinstance(path, int) or os.fsdecode(path) in devices:
            return False
        real = os.path.realpath(os.fsdecode(path))
        return real != _workdir and not real.startswith(_workdir + os.sep)

    def hook(event, args):
        if busy:
            return
        busy.append(1)
        try:
            if event.startswith("ctypes."):
                deny("ctypes (it would bypass the guards)")
            if "net" in guards and event.startswith("socket.") and event != "socket.gethostname":
                deny("network access (" + event + ")")
            if "proc" in guards:
                if event in forking:
                    deny("creating processes (" + event + ")")
                if event in ("os.kill", "os.killpg"):
                    target = args[0]
                    if event == "os.kill" and target not in (0, _self_pid):
                        deny("signalling another process")
                    if event == "os.killpg" and target not in (0, os.getpgid(0)):
                        deny("signalling another process group")
                if event == "open" and isinstance(args[0], (str, bytes)):
                    real = os.path.realpath(os.fsdecode(args[0]))
                    if real.startswith("/proc/") and not real.startswith(proc_self):
                        deny("reading other processes' /proc entries")
            if "fs" in guards:
                if event == "open":
                    path, mode, flags = args
                    writing = (mode is not None and any(c in mode for c in "wax+")) or (
                        mode is None and flags is not None and flags & write_flags)
                    if writing and outside(path):
                        deny("writing outside the working directory")
                elif event in path_events:
                    targets = [a for a in args[:2] if isinstance(a, (str, bytes))]
                    if any(outside(p) for p in targets):
                        deny(event + " outside the working directory")
        finally:
            busy.pop()

    sys.addaudithook(hook)


if _guards:
    _install_guards(_guards)
with open("solution.py", encoding="utf-8") as _f:
    _source = _f.read()
_code = compile(_source, "solution.py", "exec")
del _f, _source
if _mode == "exec":
    _g = {"__name__": "__main__", "__file__": "solution.py", "__builtins__": builtins}
    exec(_code, _g)
else:
    import json
    _result_fd = os.dup(1)  # the return value goes here, whatever the program does to sys.stdout
    _payload = json.loads(sys.stdin.read())
    sys.stdin = open(os.devnull)
    _g = {"__name__": "solution", "__file__": "solution.py", "__builtins__": builtins}
    exec(_code, _g)
    _name = _payload["fn_name"]
    _cls = _g.get("Solution")
    if isinstance(_cls, type) and hasattr(_cls, _name):
        _fn = getattr(_cls(), _name)
    elif callable(_g.get(_name)):
        _fn = _g[_name]
    else:
        raise NameError("the program defines no function or Solution method named %r" % _name)
    _value = _fn(*_payload["args"])

    def _plain(x):
        if x is None or isinstance(x, (bool, int, float, str)):
            return x
        if isinstance(x, (list, tuple)):
            return [_plain(v) for v in x]
        if isinstance(x, dict) and all(isinstance(k, str) for k in x):
            return {k: _plain(v) for k, v in x.items()}
        raise TypeError

    try:
        _out = {"value": _plain(_value)}
    except (TypeError, RecursionError):
        _out = {"repr": repr(_value)[:1000]}
    try:
        sys.stdout.flush()
    except Exception:
        pass
    _line = "\n\x1ep3-sandbox-result " + json.dumps(_out) + "\n"  # "\x1e..." = _RESULT_MARK
    os.write(_result_fd, _line.encode("utf-8"))
"""


# --------------------------------------------------------------------------------------------------
# Launcher: this file run as ``python -I -S sandbox.py launch ...`` in the program's new session. It
# needs only os/sys/ctypes/resource, so it sits above the module's other imports and exits before
# them (a launch costs one bare interpreter start, not the import of this whole module).

_UID_RANGE = (1_000_000_000, 2_000_000_000)  # throw-away uids; nothing on a normal system uses them
_NOBODY = 65534
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


def _processes_of(uid: int) -> list[int]:
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


_LAUNCH_ARGS = (
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
    cfg = dict(zip(_LAUNCH_ARGS, argv[: len(_LAUNCH_ARGS)], strict=True))
    for k in _LAUNCH_ARGS:
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
        if uid is not None and not 0 < uid < 2**32 - 1:
            raise ValueError(f"sandbox uid {uid} is not an ordinary uid")
        workdir = cfg["workdir"]
        with open(os.path.join(workdir, "solution.py"), "rb") as f:
            code = f.read()
        host_dir = os.open(workdir, os.O_RDONLY | os.O_DIRECTORY)
        as_root = os.geteuid() == 0 and uid is not None
        # Same uid as the caller: the process limit counts the caller's processes too.
        extra = 0 if as_root else len(_processes_of(os.getuid()))
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
        boot = [python, *_PYTHON_FLAGS, "-c", _BOOTSTRAP, cfg["mode"], ",".join(guards)]
        boot += argv[len(_LAUNCH_ARGS) :]
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

    if not _UID_RANGE[0] <= uid < _UID_RANGE[1]:
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
        if not [p for p in _processes_of(uid) if p != me]:  # zombies left for their reaper
            return
        time.sleep(0.005)


if __name__ == "__main__":
    if sys.argv[1:2] == ["launch"]:
        _launch(sys.argv[2:])  # never returns: execs the program or exits
    if sys.argv[1:2] != ["sweep"] or len(sys.argv) != 3:
        raise SystemExit("usage: sandbox.py launch ARGS... | sweep UID")
    _sweep_main(int(sys.argv[2]))
    raise SystemExit(0)

import errno  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import re  # noqa: E402
import secrets  # noqa: E402
import selectors  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402

STATUSES = (
    "ok",
    "error",
    "timeout",
    "memory",
    "output_limit",
    "killed",
    "blocked",
    "sandbox_error",
)
DEFAULT_MAX_OUTPUT_BYTES = 4 << 20
DEFAULT_FILE_SIZE_MB = 64
DEFAULT_MAX_PROCESSES = 32
DEFAULT_MAX_OPEN_FILES = 64

_SETUP_S = (
    30.0  # allowance for the launcher to set up the sandbox before the program's clock starts
)
_SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"


@dataclass(frozen=True)
class SandboxResult:
    """Outcome of one sandboxed program.

    ``status`` is one of ``STATUSES``; ``reason`` says why in words. ``stdout``/``stderr`` hold at
    most ``max_output_bytes`` each (``*_truncated`` tells). ``returncode`` is the exit code, or minus
    the signal number when a signal ended the program (``term_signal``). ``wall_s``: seconds from
    spawn to exit, sandbox setup included; ``cpu_s``: user + system CPU seconds of the program;
    ``max_rss_mb``: its peak resident memory, never less than the caller's own resident size at spawn
    (Linux carries that high-water mark across fork and exec). ``uid``: the throw-away uid it ran as (None when it
    kept the caller's). ``isolation`` names the active layers.
    """

    status: str
    returncode: int | None
    stdout: str
    stderr: str
    reason: str
    wall_s: float
    cpu_s: float
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    term_signal: int | None = None
    max_rss_mb: float = 0.0
    uid: int | None = None
    isolation: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass(frozen=True)
class TestCaseResult:
    """One APPS test case: ``passed``; ``status`` is ``passed``, ``wrong_answer`` or the sandbox status
    of a failed run; ``reason`` in words; ``expected``/``got`` as compared; ``run`` the raw result."""

    __test__ = False  # not a pytest class

    index: int
    passed: bool
    status: str
    reason: str
    run: SandboxResult
    expected: object = None
    got: object = None


# --------------------------------------------------------------------------------------------------
# Public API


def run_python(
    code: str,
    *,
    stdin: str = "",
    timeout_s: float = 4.0,
    memory_mb: int = 512,
    args: list[str] | None = None,
    cpu_s: float | None = None,
    max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
    file_size_mb: int = DEFAULT_FILE_SIZE_MB,
    max_processes: int = DEFAULT_MAX_PROCESSES,
    kernel_isolation: bool = True,
) -> SandboxResult:
    """Run ``code`` as ``__main__`` of a fresh, contained Python process fed ``stdin``.

    ``timeout_s`` is the wall-clock limit (the parent kills the process group when it passes);
    ``cpu_s`` the CPU-time limit (default ``timeout_s``, whole seconds, enforced by the kernel);
    ``memory_mb`` the address-space limit; ``file_size_mb`` the largest file and the size of each
    private tmpfs; ``max_processes`` the process/thread limit; ``args`` become ``sys.argv[1:]``.
    ``kernel_isolation=False`` skips namespaces and the uid switch and relies on the audit-hook
    guards alone (weaker; for machines where the kernel layers misbehave, and for testing them).
    """
    if not isinstance(code, str):
        raise TypeError(f"run_python: code must be str, got {type(code).__name__}")
    if not isinstance(stdin, str):
        raise TypeError(f"run_python: stdin must be str, got {type(stdin).__name__}")
    if args is not None and not all(isinstance(a, str) for a in args):
        raise TypeError(f"run_python: args must be a list of str, got {args!r}")
    return _run(
        code,
        mode="exec",
        stdin=stdin,
        args=list(args or []),
        limits=_Limits.make(
            timeout_s=timeout_s,
            cpu_s=cpu_s,
            memory_mb=memory_mb,
            max_output_bytes=max_output_bytes,
            file_size_mb=file_size_mb,
            max_processes=max_processes,
            kernel_isolation=kernel_isolation,
        ),
    )


def run_test_cases(
    code: str,
    tests: dict | str,
    *,
    timeout_s: float = 4.0,
    memory_mb: int = 512,
    max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
    kernel_isolation: bool = True,
) -> list[TestCaseResult]:
    """Run ``code`` on APPS ``input_output`` cases, one sandboxed process per case.

    ``tests``: dict or JSON string ``{"inputs": [...], "outputs": [...], "fn_name"?: str}``.
    Without ``fn_name`` each input is the program's stdin (a string or a list of lines) and its
    stdout must equal the output line by line after whitespace normalisation (numbers compared with
    a 1e-6 tolerance). With ``fn_name`` the program defines that function (or ``class Solution``
    with that method); each input is the argument list and the return value must equal the output
    (tuples count as lists; an output wrapped in a one-element list also matches). A case that
    crashes, hangs or floods only fails itself. Other arguments as in ``run_python``.
    """
    spec = _parse_tests(tests)
    limits = _Limits.make(
        timeout_s=timeout_s,
        memory_mb=memory_mb,
        max_output_bytes=max_output_bytes,
        kernel_isolation=kernel_isolation,
    )
    results = []
    for i, (inp, expected) in enumerate(zip(spec["inputs"], spec["outputs"], strict=True)):
        if spec["fn_name"] is None:
            stdin = "\n".join(map(str, inp)) + "\n" if isinstance(inp, list) else str(inp)
            run = _run(code, mode="exec", stdin=stdin, args=[], limits=limits)
            results.append(_judge_stdio(i, run, expected))
        else:
            call_args = inp if isinstance(inp, list) else [inp]
            payload = json.dumps({"fn_name": spec["fn_name"], "args": call_args})
            run = _run(code, mode="call", stdin=payload, args=[], limits=limits)
            results.append(_judge_call(i, run, expected))
    return results


# --------------------------------------------------------------------------------------------------
# Test-case parsing and judging


def _parse_tests(tests: dict | str) -> dict:
    if isinstance(tests, str):
        try:
            tests = json.loads(tests)
        except json.JSONDecodeError as exc:
            raise ValueError(f"run_test_cases: tests is not valid JSON: {exc}") from exc
    if not isinstance(tests, dict):
        raise ValueError(f"run_test_cases: tests must be a dict, got {type(tests).__name__}")
    missing = [k for k in ("inputs", "outputs") if k not in tests]
    if missing:
        raise ValueError(f"run_test_cases: tests lacks key(s) {missing}; found {sorted(tests)}")
    inputs, outputs = tests["inputs"], tests["outputs"]
    if not isinstance(inputs, list) or not isinstance(outputs, list):
        raise ValueError("run_test_cases: tests['inputs'] and tests['outputs'] must be lists")
    if len(inputs) != len(outputs):
        raise ValueError(
            f"run_test_cases: {len(inputs)} inputs but {len(outputs)} outputs; they must pair up"
        )
    fn_name = tests.get("fn_name") or None
    if fn_name is not None and not (isinstance(fn_name, str) and fn_name.isidentifier()):
        raise ValueError(f"run_test_cases: fn_name must be an identifier, got {fn_name!r}")
    return {"inputs": inputs, "outputs": outputs, "fn_name": fn_name}


def _failed(i: int, run: SandboxResult, expected: object) -> TestCaseResult:
    return TestCaseResult(i, False, run.status, run.reason, run, expected=expected)


def normalise_lines(text: str | list) -> list[str]:
    """Output text (or a list of lines) as lines with runs of whitespace collapsed to one space,
    ends stripped, and empty lines at the start and end dropped."""
    if isinstance(text, list):
        text = "\n".join(map(str, text))
    lines = [" ".join(line.split()) for line in str(text).splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    while lines and not lines[0]:
        lines.pop(0)
    return lines


def _tokens_match(a: str, b: str) -> bool:
    if a == b:
        return True
    try:
        x, y = float(a), float(b)
    except ValueError:
        return False
    return math.isclose(x, y, rel_tol=1e-6, abs_tol=1e-6)


def stdout_matches(got: str, expected: str | list) -> bool:
    """True when ``got`` equals ``expected`` line by line after ``normalise_lines`` (tokens that are
    numbers may differ by 1e-6, relative or absolute)."""
    g, e = normalise_lines(got), normalise_lines(expected)
    if g == e:
        return True
    if len(g) != len(e):
        return False
    for gl, el in zip(g, e, strict=True):
        gt, et = gl.split(" "), el.split(" ")
        if len(gt) != len(et) or not all(_tokens_match(a, b) for a, b in zip(gt, et, strict=True)):
            return False
    return True


def _listify(x: object) -> object:
    if isinstance(x, (list, tuple)):
        return [_listify(v) for v in x]
    if isinstance(x, dict):
        return {k: _listify(v) for k, v in x.items()}
    return x


def _values_match(got: object, expected: object) -> bool:
    if isinstance(got, list) and isinstance(expected, list):
        return len(got) == len(expected) and all(map(_values_match, got, expected))
    if isinstance(got, dict) and isinstance(expected, dict):
        return got.keys() == expected.keys() and all(
            _values_match(got[k], expected[k]) for k in got
        )
    if isinstance(got, bool) or isinstance(expected, bool):
        return got is expected
    if isinstance(got, (int, float)) and isinstance(expected, (int, float)):
        return got == expected or math.isclose(got, expected, rel_tol=1e-6, abs_tol=1e-9)
    return type(got) is type(expected) and got == expected


def return_value_matches(got: object, expected: object) -> bool:
    """APPS call-based comparison: tuples count as lists, and an expected value wrapped in a
    one-element list (the usual APPS encoding) also matches the bare value."""
    got, expected = _listify(got), _listify(expected)
    if _values_match(got, expected):
        return True
    return isinstance(expected, list) and len(expected) == 1 and _values_match(got, expected[0])


def _judge_stdio(i: int, run: SandboxResult, expected: object) -> TestCaseResult:
    if not run.ok:
        return _failed(i, run, expected)
    if run.stdout_truncated:
        return TestCaseResult(i, False, "output_limit", "stdout was truncated", run, expected)
    if stdout_matches(run.stdout, expected):
        return TestCaseResult(i, True, "passed", "output matches", run, expected, run.stdout)
    got = normalise_lines(run.stdout)
    exp = normalise_lines(expected)
    where = next(
        (k for k, (a, b) in enumerate(zip(got, exp, strict=False)) if a != b),
        min(len(got), len(exp)),
    )
    reason = f"output differs at line {where + 1} ({len(got)} lines, expected {len(exp)})"
    return TestCaseResult(i, False, "wrong_answer", reason, run, expected, run.stdout)


def _judge_call(i: int, run: SandboxResult, expected: object) -> TestCaseResult:
    if not run.ok:
        return _failed(i, run, expected)
    marked = [ln for ln in run.stdout.split("\n") if ln.startswith(_RESULT_MARK)]
    if not marked:
        reason = "the program exited before the function returned"
        return TestCaseResult(i, False, "error", reason, run, expected)
    got = json.loads(marked[-1][len(_RESULT_MARK) :])
    if "repr" in got:
        reason = f"return value is not plain data: {got['repr'][:200]}"
        return TestCaseResult(i, False, "wrong_answer", reason, run, expected, got["repr"])
    value = got["value"]
    if return_value_matches(value, expected):
        return TestCaseResult(i, True, "passed", "return value matches", run, expected, value)
    reason = f"returned {_short(value)}, expected {_short(expected)}"
    return TestCaseResult(i, False, "wrong_answer", reason, run, expected, value)


def _short(x: object, n: int = 120) -> str:
    s = repr(x)
    return s if len(s) <= n else s[: n - 3] + "..."


# --------------------------------------------------------------------------------------------------
# Parent side: spawn the launcher, watch it, classify the outcome


@dataclass(frozen=True)
class _Limits:
    """Validated limits of one run (see ``run_python`` for their meaning)."""

    timeout_s: float
    cpu_s: int
    memory_mb: int
    max_output_bytes: int
    file_size_mb: int
    max_processes: int
    kernel_isolation: bool

    @classmethod
    def make(
        cls,
        *,
        timeout_s,
        cpu_s=None,
        memory_mb,
        max_output_bytes=DEFAULT_MAX_OUTPUT_BYTES,
        file_size_mb=DEFAULT_FILE_SIZE_MB,
        max_processes=DEFAULT_MAX_PROCESSES,
        kernel_isolation=True,
    ):
        checks = {
            "timeout_s": timeout_s,
            "memory_mb": memory_mb,
            "max_output_bytes": max_output_bytes,
            "file_size_mb": file_size_mb,
            "max_processes": max_processes,
        }
        if cpu_s is not None:
            checks["cpu_s"] = cpu_s
        for name, value in checks.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"sandbox: {name} must be a positive number, got {value!r}")
        if memory_mb < 32:
            raise ValueError(f"sandbox: memory_mb={memory_mb} is too small to start Python (>= 32)")
        return cls(
            timeout_s=float(timeout_s),
            cpu_s=max(1, math.ceil(timeout_s if cpu_s is None else cpu_s)),
            memory_mb=int(memory_mb),
            max_output_bytes=int(max_output_bytes),
            file_size_mb=int(file_size_mb),
            max_processes=int(max_processes),
            kernel_isolation=bool(kernel_isolation),
        )


def _pick_uid() -> int | None:
    """A random uid from ``_UID_RANGE`` when we are root and it is mapped in our user namespace."""
    if os.geteuid() != 0:
        return None
    lo, hi = _UID_RANGE
    try:
        with open("/proc/self/uid_map") as f:
            ranges = [tuple(map(int, line.split())) for line in f if line.strip()]
    except OSError:
        ranges = [(0, 0, 2**32 - 1)]
    if not any(inside <= lo and hi <= inside + count for inside, _, count in ranges):
        return _NOBODY  # shared 'nobody': still unprivileged, but no per-uid sweep afterwards
    return lo + secrets.randbelow(hi - lo)


def _sweep(uid: int) -> None:
    """Kill every process left running as the throw-away ``uid`` (e.g. one that called setsid)."""
    if uid is None or not _UID_RANGE[0] <= uid < _UID_RANGE[1] or not _processes_of(uid):
        return
    subprocess.run(
        [sys.executable, "-I", "-S", "-B", os.path.abspath(__file__), "sweep", str(uid)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=30,
        check=False,
    )


class _Reader:
    """Capped reader of one pipe: keeps at most ``cap`` bytes, counts the rest."""

    def __init__(self, cap: int):
        self.cap, self.buf, self.seen = cap, bytearray(), 0

    def feed(self, data: bytes) -> bool:
        """Store ``data``; True once more than ``cap`` bytes have arrived."""
        self.seen += len(data)
        room = self.cap - len(self.buf)
        if room > 0:
            self.buf += data[:room]
        return self.seen > self.cap

    def text(self) -> str:
        return self.buf.decode("utf-8", errors="replace")


def _run(code: str, *, mode: str, stdin: str, args: list[str], limits: _Limits) -> SandboxResult:
    t0 = time.monotonic()
    workdir = tempfile.mkdtemp(prefix="p3-sandbox-")
    uid = _pick_uid() if limits.kernel_isolation else None
    try:
        with open(os.path.join(workdir, "solution.py"), "w", encoding="utf-8") as f:
            f.write(code)
        return _spawn_and_watch(workdir, uid, mode, stdin, args, limits, t0)
    except Exception as exc:  # the parent survives anything; report it
        return SandboxResult(
            "sandbox_error",
            None,
            "",
            "",
            f"sandbox failed: {type(exc).__name__}: {exc}",
            time.monotonic() - t0,
            0.0,
            uid=uid,
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _spawn_and_watch(workdir, uid, mode, stdin, args, limits, t0) -> SandboxResult:
    env = {
        "PATH": _SAFE_PATH,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "PYTHONHASHSEED": "0",
        "PYTHONIOENCODING": "utf-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "HOME": workdir,
        "TMPDIR": workdir,
    }
    status_r, status_w = os.pipe()
    values = {
        "kernel": int(limits.kernel_isolation),
        "status_fd": status_w,
        "workdir": workdir,
        "uid": "-" if uid is None else uid,
        "mode": mode,
        "cpu_s": limits.cpu_s,
        "memory_mb": limits.memory_mb,
        "file_size_mb": limits.file_size_mb,
        "max_processes": limits.max_processes,
        "max_open_files": DEFAULT_MAX_OPEN_FILES,
    }
    launch_argv = [str(values[k]) for k in _LAUNCH_ARGS] + args
    with tempfile.TemporaryFile() as stdin_file:
        stdin_file.write(stdin.encode("utf-8"))
        stdin_file.seek(0)
        try:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-I",
                    "-S",
                    "-B",
                    os.path.abspath(__file__),
                    "launch",
                    *launch_argv,
                ],
                stdin=stdin_file,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=workdir,
                env=env,
                start_new_session=True,
                pass_fds=(status_w,),
            )
        except BaseException:
            os.close(status_r)
            raise
        finally:
            os.close(status_w)
    out, err, status = (
        _Reader(limits.max_output_bytes),
        _Reader(limits.max_output_bytes),
        _Reader(1 << 16),
    )
    why_killed, swept = None, False
    try:
        why_killed, swept = _watch(proc, out, err, status_r, status, limits.timeout_s, uid)
    finally:
        os.close(status_r)
        # Kill whatever is left of the group while the leader is unreaped (its pid stays reserved).
        _killpg(proc.pid)
        _, wait_status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(wait_status)
        for pipe in (proc.stdout, proc.stderr):
            pipe.close()
    wall = time.monotonic() - t0
    launch = _parse_status(status.text())
    run_uid = uid if "uid" in launch.get("isolation", ()) else None
    if not swept:
        _sweep(uid)
    cpu = usage.ru_utime + usage.ru_stime
    sig = -proc.returncode if proc.returncode < 0 else None
    fields = dict(
        returncode=proc.returncode,
        stdout=out.text(),
        stderr=err.text(),
        wall_s=wall,
        cpu_s=cpu,
        stdout_truncated=out.seen > out.cap,
        stderr_truncated=err.seen > err.cap,
        term_signal=sig,
        max_rss_mb=usage.ru_maxrss / 1024,
        uid=run_uid,
        isolation=tuple(launch.get("isolation", ())),
    )
    if "ready" not in launch:
        reason = (
            launch.get("error") or f"launcher ended with code {proc.returncode} before starting"
        )
        if why_killed == "timeout":
            reason = "launcher did not start in time"
        return SandboxResult("sandbox_error", reason=f"sandbox setup failed: {reason}", **fields)
    status_name, reason = _classify(proc.returncode, sig, err.text(), cpu, why_killed, limits)
    return SandboxResult(status_name, reason=reason, **fields)


def _killpg(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _watch(proc, out: _Reader, err: _Reader, status_r: int, status: _Reader, timeout_s, uid):
    """Pump the pipes until the program ends, overflows or runs past ``timeout_s``.

    The clock starts when the launcher reports the sandbox ready (setting it up on a loaded machine
    does not eat into the program's time; the setup itself gets ``_SETUP_S``).

    Returns ``(why_killed, swept)``: why_killed is None, ``"timeout"`` or ``"output_limit"`` (the
    latter two after killing the group); swept tells whether leftovers of ``uid`` were killed."""
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ, out)
    sel.register(proc.stderr, selectors.EVENT_READ, err)
    sel.register(status_r, selectors.EVENT_READ, status)
    try:
        pidfd = os.pidfd_open(proc.pid)
        sel.register(pidfd, selectors.EVENT_READ, "exit")
    except (AttributeError, OSError):
        pidfd = None
    open_pipes = 3
    deadline = time.monotonic() + _SETUP_S + timeout_s
    started = False
    try:
        while True:
            if not started and status.buf.startswith(b"ready "):
                started, deadline = True, time.monotonic() + timeout_s
            left = deadline - time.monotonic()
            if left <= 0:
                _killpg(proc.pid)
                return "timeout", False
            exited = False
            for key, _ in sel.select(timeout=min(left, 0.05 if pidfd is None else left)):
                if key.data == "exit":
                    exited = True
                    continue
                data = os.read(key.fd, 1 << 16)
                if not data:
                    sel.unregister(key.fileobj)
                    open_pipes -= 1
                elif key.data.feed(data) and key.data is not status:
                    _killpg(proc.pid)
                    return "output_limit", False
            if pidfd is None:
                exited = os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            if exited:
                break
        # The program ended: stop anything it left behind, then drain what is already written.
        _killpg(proc.pid)
        _sweep(uid)
        if pidfd is not None:
            sel.unregister(pidfd)
        drain_until = min(deadline, time.monotonic() + 0.5)
        while open_pipes and time.monotonic() < drain_until:
            for key, _ in sel.select(timeout=0.05):
                data = os.read(key.fd, 1 << 16)
                if not data:
                    sel.unregister(key.fileobj)
                    open_pipes -= 1
                elif key.data.feed(data) and key.data is not status:
                    return "output_limit", True
        return None, True
    finally:
        sel.close()
        if pidfd is not None:
            os.close(pidfd)


def _parse_status(text: str) -> dict:
    """The launcher's last line: ``ready L1,L2,...`` or ``error L1,... message``."""
    lines = text.strip().splitlines()
    word, _, rest = (lines[-1] if lines else "").partition(" ")
    layers, _, message = rest.partition(" ")
    out = {"isolation": tuple(filter(None, layers.split(",")))}
    if word == "ready":
        out["ready"] = True
    elif word == "error":
        out["error"] = message
    return out


_EXC_LINE = re.compile(
    r"^([A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt|Warning))\b(?::\s?(.*))?$"
)
_BLOCKED_ERRNOS = {
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EROFS: "read-only file system",
    errno.ENETUNREACH: "no network in the sandbox",
    errno.EAFNOSUPPORT: "no network in the sandbox",
    errno.EHOSTUNREACH: "no network in the sandbox",
    errno.EADDRNOTAVAIL: "no network in the sandbox",
    errno.EAGAIN: "process limit reached",
}
_OUTPUT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def _last_exception(stderr: str) -> tuple[str, str] | None:
    for line in reversed(stderr.strip().splitlines()[-50:]):
        m = _EXC_LINE.match(line.strip())
        if m:
            return m.group(1), (m.group(2) or "").strip()
    return None


def _classify(code, sig, stderr, cpu, why_killed, limits: _Limits) -> tuple[str, str]:
    """(status, reason) from how the program ended."""
    if why_killed == "timeout":
        return "timeout", f"wall-clock limit of {limits.timeout_s:g} s exceeded"
    if why_killed == "output_limit":
        return "output_limit", f"output over {limits.max_output_bytes} bytes; program killed"
    if sig == signal.SIGXCPU or (sig == signal.SIGKILL and cpu >= limits.cpu_s - 0.05):
        return "timeout", f"CPU time limit of {limits.cpu_s} s exceeded"
    if sig == signal.SIGXFSZ:
        return "output_limit", f"file size limit of {limits.file_size_mb} MB exceeded"
    if sig is not None:
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
        hint = " (stack overflow or memory limit?)" if sig == signal.SIGSEGV else ""
        return "killed", f"killed by {name}{hint}"
    if code == 0:
        return "ok", "exited normally"
    exc = _last_exception(stderr)
    if exc is not None:
        name, message = exc
        text = f"{name}: {message}" if message else name
        # Under memory pressure the traceback itself can fail part-way and end in another
        # exception; any MemoryError in it still means the memory limit was hit.
        # CPython reports some failed allocations (deep frames under RLIMIT_AS) as a SystemError
        # without an exception; the sandboxed program runs the stdlib only, so that is memory.
        starved = name == "SystemError" and "without exception set" in message
        if name == "MemoryError" or "[Errno 12]" in message or "MemoryError" in stderr or starved:
            return "memory", f"memory limit of {limits.memory_mb} MB reached ({text})"
        if message.startswith("sandbox: "):
            return "blocked", message[len("sandbox: ") :]
        m = re.match(r"\[Errno (\d+)\]", message)
        if m and int(m.group(1)) in _BLOCKED_ERRNOS:
            return "blocked", f"{_BLOCKED_ERRNOS[int(m.group(1))]} ({text})"
        if m and int(m.group(1)) in _OUTPUT_ERRNOS:
            return "output_limit", f"disk limit of {limits.file_size_mb} MB reached ({text})"
        if name == "RuntimeError" and "can't start new thread" in message:
            return "blocked", f"process/thread limit reached ({text})"
        return "error", text[:500]
    if "Fatal Python error" in stderr and "memory" in stderr.lower():
        return "memory", f"memory limit of {limits.memory_mb} MB reached (fatal error)"
    return "error", f"exit code {code}"
