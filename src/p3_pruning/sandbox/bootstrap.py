"""The program that runs inside the sandboxed interpreter, before and around the untrusted code.

Not imported: ``launcher.py`` reads this file as text and passes it to ``python -S -s -B -P -c``
(standard library only, no site). Arguments: mode ("exec" | "call"), comma-separated guards
("net", "proc", "fs": the audit-hook guards for the kernel layers that are missing), then the
program's argv. The program is ``solution.py`` in the working directory.

- exec mode: the program runs as ``__main__``.
- call mode: stdin holds ``{"fn_name": ..., "args": [...]}``; the program is run as module
  ``solution``, the function (or ``Solution().fn_name``) is called, and its return value is written
  as one line ``RESULT_MARK + JSON`` ({"value": ...} for plain data, else {"repr": ...}) to a
  private duplicate of stdout, whatever the program does to ``sys.stdout``.
"""

import builtins
import os
import sys

RESULT_MARK = "\x1ep3-sandbox-result "  # the parent's ``p3_pruning.sandbox.apps.RESULT_MARK``


# audit events that create processes, and those that change a path
FORKING = frozenset(
    ("os.fork", "os.forkpty", "os.exec", "os.posix_spawn", "os.spawn", "os.system")
    + ("subprocess.Popen", "pty.spawn")
)
PATH_EVENTS = frozenset(
    ("os.remove", "os.rename", "os.rmdir", "os.mkdir", "os.symlink", "os.link", "os.chmod")
    + ("os.chown", "os.truncate", "os.utime", "shutil.rmtree", "shutil.move")
)


class SandboxBlockedError(PermissionError):
    pass


def install_guards(guards: set, workdir: str, self_pid: int) -> None:
    """An audit hook that blocks what the missing kernel layers would have stopped."""

    def deny(what):
        raise SandboxBlockedError("sandbox: " + what + " is blocked")

    def no_pidfd(*args, **kwargs):
        deny("signalling another process (pidfd)")

    if "proc" in guards:  # these raise no audit event, and a pidfd reaches any process
        import _signal
        import posix
        import signal

        for module, name in (
            (os, "pidfd_open"),
            (posix, "pidfd_open"),
            (signal, "pidfd_send_signal"),
            (_signal, "pidfd_send_signal"),
        ):
            if hasattr(module, name):
                setattr(module, name, no_pidfd)

    busy = []
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
    proc_self = ("/proc/self", "/proc/thread-self", f"/proc/{self_pid}")
    devices = ("/dev/null", "/dev/stdout", "/dev/stderr")

    def outside(path):
        if isinstance(path, int) or os.fsdecode(path) in devices:
            return False
        real = os.path.realpath(os.fsdecode(path))
        return real != workdir and not real.startswith(workdir + os.sep)

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
                if event in FORKING:
                    deny("creating processes (" + event + ")")
                if event in ("os.kill", "os.killpg"):
                    target = args[0]
                    if event == "os.kill" and target not in (0, self_pid):
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
                        mode is None and flags is not None and flags & write_flags
                    )
                    if writing and outside(path):
                        deny("writing outside the working directory")
                elif event in PATH_EVENTS:
                    targets = [a for a in args[:2] if isinstance(a, (str, bytes))]
                    if any(outside(p) for p in targets):
                        deny(event + " outside the working directory")
        finally:
            busy.pop()

    sys.addaudithook(hook)


def plain(x):
    """``x`` as JSON-able plain data (tuples become lists); TypeError when it is not."""
    if x is None or isinstance(x, (bool, int, float, str)):
        return x
    if isinstance(x, (list, tuple)):
        return [plain(v) for v in x]
    if isinstance(x, dict) and all(isinstance(k, str) for k in x):
        return {k: plain(v) for k, v in x.items()}
    raise TypeError


def call(code) -> None:
    """Call mode: run the program as module ``solution``, call the function named on stdin."""
    import json

    result_fd = os.dup(1)  # the return value goes here, whatever the program does to sys.stdout
    payload = json.loads(sys.stdin.read())
    sys.stdin = open(os.devnull)
    g = {"__name__": "solution", "__file__": "solution.py", "__builtins__": builtins}
    exec(code, g)
    name = payload["fn_name"]
    cls = g.get("Solution")
    if isinstance(cls, type) and hasattr(cls, name):
        fn = getattr(cls(), name)
    elif callable(g.get(name)):
        fn = g[name]
    else:
        raise NameError(f"the program defines no function or Solution method named {name!r}")
    value = fn(*payload["args"])
    try:
        out = {"value": plain(value)}
    except (TypeError, RecursionError):
        out = {"repr": repr(value)[:1000]}
    try:
        sys.stdout.flush()
    except Exception:
        pass
    line = "\n" + RESULT_MARK + json.dumps(out) + "\n"
    os.write(result_fd, line.encode("utf-8"))


def main() -> None:
    builtins.exit = builtins.quit = sys.exit  # -S skips site, which defines them
    mode, guards = sys.argv[1], set(filter(None, sys.argv[2].split(",")))
    sys.argv = ["solution.py"] + sys.argv[3:]
    if guards:
        install_guards(guards, os.path.realpath(os.getcwd()), os.getpid())
    with open("solution.py", encoding="utf-8") as f:
        source = f.read()
    code = compile(source, "solution.py", "exec")
    del source
    if mode == "exec":
        exec(code, {"__name__": "__main__", "__file__": "solution.py", "__builtins__": builtins})
    else:
        call(code)


if __name__ == "__main__":
    main()
