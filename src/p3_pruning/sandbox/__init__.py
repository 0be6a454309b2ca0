"""Run untrusted Python (model-generated programs) in a contained child process.

Kedro-free and stdlib only. ``run_python(code, ...) -> SandboxResult`` runs one program;
``run_test_cases(code, tests, ...) -> list[TestCaseResult]`` grades a program on APPS-style test
cases, one sandboxed process per case.

Four programs, one module each: ``runner`` (the parent side: spawn, watch, classify), ``launcher``
(sets the layers up in the child's session, then execs the sandboxed interpreter), ``bootstrap``
(runs inside the sandboxed interpreter around the program; read as text and passed to ``-c``) and
``apps`` (the APPS test-case judge).

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

The launcher is ``launcher.py`` run as a script (``python -I -S launcher.py launch ARGS``): it sets up
the layers in a fresh single-threaded interpreter and then ``execve``s the sandboxed interpreter
(``python -S -s -B -P -c <bootstrap.py>``), so the caller never runs Python code between ``fork`` and
``exec`` (safe in processes with threads, e.g. torch). The sandboxed interpreter sees the standard
library only (no site-packages).
"""

from p3_pruning.sandbox.apps import (
    TestCaseResult,
    normalise_lines,
    return_value_matches,
    run_test_cases,
    stdout_matches,
)
from p3_pruning.sandbox.runner import (
    DEFAULT_FILE_SIZE_MB,
    DEFAULT_MAX_OPEN_FILES,
    DEFAULT_MAX_OUTPUT_BYTES,
    DEFAULT_MAX_PROCESSES,
    STATUSES,
    SandboxResult,
    run_python,
)

__all__ = [
    "DEFAULT_FILE_SIZE_MB",
    "DEFAULT_MAX_OPEN_FILES",
    "DEFAULT_MAX_OUTPUT_BYTES",
    "DEFAULT_MAX_PROCESSES",
    "STATUSES",
    "SandboxResult",
    "TestCaseResult",
    "normalise_lines",
    "return_value_matches",
    "run_python",
    "run_test_cases",
    "stdout_matches",
]
