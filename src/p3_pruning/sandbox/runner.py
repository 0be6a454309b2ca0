"""Parent side of the sandbox: spawn the launcher, watch the program, classify how it ended.

``run_python(code, ...) -> SandboxResult`` runs one program (see the package doc for how it is
contained). ``run_sandboxed`` is the same run with validated ``Limits`` and a mode ("exec", or
"call" for the APPS judge's function calls).
"""

from __future__ import annotations

import errno
import math
import os
import re
import secrets
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

from p3_pruning.sandbox import launcher
from p3_pruning.sandbox.launcher import LAUNCH_ARGS, NOBODY, UID_RANGE, processes_of

LAUNCHER_PATH = os.path.abspath(launcher.__file__)


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
    return run_sandboxed(
        code,
        mode="exec",
        stdin=stdin,
        args=list(args or []),
        limits=Limits.make(
            timeout_s=timeout_s,
            cpu_s=cpu_s,
            memory_mb=memory_mb,
            max_output_bytes=max_output_bytes,
            file_size_mb=file_size_mb,
            max_processes=max_processes,
            kernel_isolation=kernel_isolation,
        ),
    )


@dataclass(frozen=True)
class Limits:
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
    """A random uid from ``UID_RANGE`` when we are root and it is mapped in our user namespace."""
    if os.geteuid() != 0:
        return None
    lo, hi = UID_RANGE
    try:
        with open("/proc/self/uid_map") as f:
            ranges = [tuple(map(int, line.split())) for line in f if line.strip()]
    except OSError:
        ranges = [(0, 0, 2**32 - 1)]
    if not any(inside <= lo and hi <= inside + count for inside, _, count in ranges):
        return NOBODY  # shared 'nobody': still unprivileged, but no per-uid sweep afterwards
    return lo + secrets.randbelow(hi - lo)


def _sweep(uid: int) -> None:
    """Kill every process left running as the throw-away ``uid`` (e.g. one that called setsid)."""
    if uid is None or not UID_RANGE[0] <= uid < UID_RANGE[1] or not processes_of(uid):
        return
    subprocess.run(
        [sys.executable, "-I", "-S", "-B", LAUNCHER_PATH, "sweep", str(uid)],
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


def run_sandboxed(
    code: str, *, mode: str, stdin: str, args: list[str], limits: Limits
) -> SandboxResult:
    """Run ``code`` in ``mode`` ("exec" | "call") under ``limits``; never raises (a failure of the
    sandbox itself is a ``sandbox_error`` result)."""
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
    """Spawn the launcher, watch it to the end, reap it, and describe the run."""
    status_r, status_w = os.pipe()
    try:
        proc = _spawn(workdir, uid, mode, stdin, args, limits, status_w)
    except BaseException:
        os.close(status_r)
        raise
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
    if not swept:
        _sweep(uid)
    return _result(proc.returncode, usage, wall, out, err, launch, uid, why_killed, limits)


def _spawn(workdir, uid, mode, stdin, args, limits, status_w: int) -> subprocess.Popen:
    """Start the launcher in a new session with a scrubbed environment; ``stdin`` comes from a
    file, the launcher reports on ``status_w`` (closed here once the child holds it)."""
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
    launch_argv = [str(values[k]) for k in LAUNCH_ARGS] + args
    with tempfile.TemporaryFile() as stdin_file:
        stdin_file.write(stdin.encode("utf-8"))
        stdin_file.seek(0)
        try:
            return subprocess.Popen(
                [sys.executable, "-I", "-S", "-B", LAUNCHER_PATH, "launch", *launch_argv],
                stdin=stdin_file,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=workdir,
                env=env,
                start_new_session=True,
                pass_fds=(status_w,),
            )
        finally:
            os.close(status_w)


def _result(returncode, usage, wall, out, err, launch, uid, why_killed, limits) -> SandboxResult:
    """The ``SandboxResult`` of a reaped run: a setup failure, or the program's classified end."""
    cpu = usage.ru_utime + usage.ru_stime
    sig = -returncode if returncode < 0 else None
    fields = dict(
        returncode=returncode,
        stdout=out.text(),
        stderr=err.text(),
        wall_s=wall,
        cpu_s=cpu,
        stdout_truncated=out.seen > out.cap,
        stderr_truncated=err.seen > err.cap,
        term_signal=sig,
        max_rss_mb=usage.ru_maxrss / 1024,
        uid=uid if "uid" in launch.get("isolation", ()) else None,
        isolation=tuple(launch.get("isolation", ())),
    )
    if "ready" not in launch:
        reason = launch.get("error") or f"launcher ended with code {returncode} before starting"
        if why_killed == "timeout":
            reason = "launcher did not start in time"
        return SandboxResult("sandbox_error", reason=f"sandbox setup failed: {reason}", **fields)
    status_name, reason = _classify(returncode, sig, err.text(), cpu, why_killed, limits)
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


def _classify(code, sig, stderr, cpu, why_killed, limits: Limits) -> tuple[str, str]:
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
