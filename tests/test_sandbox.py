"""The sandbox contains hostile programs, records why each failed, and grades APPS test cases.

Every hostile program runs twice: with the kernel layers (namespaces, throw-away uid, where the
machine allows them) and with the audit-hook guards alone (``kernel_isolation=False``). After each,
the test process must still be alive and the sandbox must still run a good program.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import uuid
from pathlib import Path

import pytest

from p3_pruning.sandbox import (
    normalise_lines,
    return_value_matches,
    run_python,
    run_test_cases,
    stdout_matches,
)
from p3_pruning.sandbox.launcher import processes_of

REPO = Path(__file__).resolve().parents[1]
HANG_S = 1.0  # timeout for programs that never end
FAST_S = 20.0  # generous timeout for programs that end by themselves (the machine is shared)

MODES = [pytest.param(True, id="kernel"), pytest.param(False, id="guards")]


def _still_works(kernel: bool) -> None:
    res = run_python("print(input() * 2)", stdin="ab\n", timeout_s=FAST_S, kernel_isolation=kernel)
    assert (res.status, res.stdout) == ("ok", "abab\n"), res


def _no_leftovers(res) -> None:
    if res.uid is not None:
        assert processes_of(res.uid) == [], f"processes of uid {res.uid} survived the run"


# --------------------------------------------------------------------------------------------------
# Well-behaved programs


def test_stdin_stdout_program_runs_ok():
    res = run_python(
        "import sys\nn = int(input())\nprint(sum(map(int, sys.stdin.read().split())) * n)",
        stdin="2\n1 2 3\n4\n",
        timeout_s=FAST_S,
    )
    assert res.status == "ok" and res.ok
    assert res.returncode == 0 and res.term_signal is None
    assert res.stdout == "20\n" and res.stderr == ""
    assert not res.stdout_truncated and not res.stderr_truncated
    assert res.reason == "exited normally"
    assert 0 < res.wall_s < FAST_S and res.cpu_s > 0
    assert "rlimits" in res.isolation and "session" in res.isolation


def test_args_environment_and_hash_seed_are_fixed():
    code = "import os, sys\nprint(sys.argv[1:], hash('p3'), sorted(os.environ))"
    a = run_python(code, args=["x", "y z"], timeout_s=FAST_S)
    b = run_python(code, args=["x", "y z"], timeout_s=FAST_S)
    assert a.status == "ok", a
    assert a.stdout == b.stdout  # PYTHONHASHSEED is fixed: same program, same output
    argv, _, rest = a.stdout.partition("]")
    assert argv == "['x', 'y z'"
    env_names = eval(rest.split(" ", 2)[2])
    assert set(env_names) <= {
        "PATH", "LANG", "LC_ALL", "PYTHONHASHSEED", "PYTHONIOENCODING",
        "PYTHONDONTWRITEBYTECODE", "HOME", "TMPDIR", "LC_CTYPE",
    }  # fmt: skip


def test_uncaught_exception_is_an_error_with_its_message():
    res = run_python("raise ValueError('bad input line 3')", timeout_s=FAST_S)
    assert res.status == "error"
    assert res.returncode == 1
    assert res.reason == "ValueError: bad input line 3"
    assert "Traceback" in res.stderr


def test_exit_builtins_work_without_site():
    res = run_python("print('a')\nexit(0)\nprint('b')", timeout_s=FAST_S)
    assert (res.status, res.stdout) == ("ok", "a\n")


def test_working_directory_is_private_and_removed_afterwards():
    res = run_python(
        "import os\nopen('scratch.txt', 'w').write('data')\nprint(os.getcwd())\n"
        "print(sorted(os.listdir('.')))",
        timeout_s=FAST_S,
    )
    assert res.status == "ok", res
    cwd, listing = res.stdout.splitlines()
    assert Path(cwd).name.startswith("p3-sandbox-")
    assert eval(listing) == ["scratch.txt", "solution.py"]
    assert not Path(cwd).exists()


def test_bad_arguments_are_rejected_with_the_name_of_the_argument():
    with pytest.raises(TypeError, match="code must be str"):
        run_python(b"print(1)")
    with pytest.raises(ValueError, match="timeout_s must be a positive number"):
        run_python("print(1)", timeout_s=0)
    with pytest.raises(ValueError, match="memory_mb"):
        run_python("print(1)", memory_mb=8)
    with pytest.raises(TypeError, match="args must be a list of str"):
        run_python("print(1)", args=[1])


# --------------------------------------------------------------------------------------------------
# Hostile programs: each contained, recorded with its reason, and the parent keeps working


@pytest.mark.parametrize("kernel", MODES)
def test_infinite_loop_times_out(kernel):
    res = run_python("while True:\n    pass", timeout_s=HANG_S, kernel_isolation=kernel)
    assert res.status == "timeout"
    assert "limit" in res.reason
    assert res.term_signal is not None
    assert res.wall_s < HANG_S + 5
    _still_works(kernel)


def test_cpu_limit_is_enforced_by_the_kernel():
    res = run_python("while True:\n    pass", timeout_s=15, cpu_s=1)
    assert res.status == "timeout", res
    assert res.reason == "CPU time limit of 1 s exceeded", res
    assert res.term_signal == signal.SIGXCPU
    assert 0.5 < res.cpu_s < 3 and res.wall_s < 15, res


@pytest.mark.parametrize("kernel", MODES)
def test_sleeping_forever_hits_the_wall_clock(kernel):
    res = run_python("import time\ntime.sleep(3600)", timeout_s=HANG_S, kernel_isolation=kernel)
    assert res.status == "timeout"
    assert res.reason == f"wall-clock limit of {HANG_S:g} s exceeded"
    assert res.cpu_s < HANG_S


@pytest.mark.parametrize("kernel", MODES)
def test_fork_bomb_is_contained(kernel):
    res = run_python("import os\nwhile True:\n    os.fork()", timeout_s=5, kernel_isolation=kernel)
    assert res.status in ("blocked", "timeout", "killed")
    if res.status == "blocked":
        assert "process" in res.reason
    _no_leftovers(res)
    _still_works(kernel)


@pytest.mark.parametrize("kernel", MODES)
def test_process_escaping_its_session_is_killed(kernel):
    code = (
        "import os, time\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    time.sleep(600)\n"
        "print('leader done')\n"
    )
    res = run_python(code, timeout_s=FAST_S, kernel_isolation=kernel)
    if "uid" in res.isolation:
        assert (res.status, res.stdout) == ("ok", "leader done\n")
        assert res.wall_s < 5  # the daemon holding the pipes did not keep the parent waiting
    else:
        assert res.status == "blocked" and "creating processes" in res.reason
    _no_leftovers(res)


@pytest.mark.parametrize("kernel", MODES)
def test_memory_bomb_hits_the_address_space_limit(kernel):
    res = run_python(
        "chunks = []\nwhile True:\n    chunks.append(bytearray(10 ** 7))",
        timeout_s=FAST_S,
        memory_mb=128,
        kernel_isolation=kernel,
    )
    assert res.status == "memory"
    assert "memory limit of 128 MB" in res.reason
    # Linux carries the resident high-water mark of the spawning process across fork and exec, so
    # measure the bomb against a trivial program spawned from this same (possibly large) process.
    idle = run_python("pass", timeout_s=FAST_S, memory_mb=128, kernel_isolation=kernel)
    assert res.max_rss_mb < max(idle.max_rss_mb, 32) + 160
    _still_works(kernel)


def test_single_huge_allocation_is_a_memory_failure():
    res = run_python("x = bytearray(10 ** 10)", timeout_s=FAST_S, memory_mb=128)
    assert res.status == "memory"
    assert "MemoryError" in res.reason


@pytest.mark.parametrize("kernel", MODES)
def test_gigabytes_of_output_are_cut_off(kernel):
    cap = 1 << 16
    res = run_python(
        "import sys\nwhile True:\n    sys.stdout.write('x' * 65536)",
        timeout_s=FAST_S,
        max_output_bytes=cap,
        kernel_isolation=kernel,
    )
    assert res.status == "output_limit"
    assert res.stdout_truncated and len(res.stdout) == cap and set(res.stdout) == {"x"}
    assert res.wall_s < 10
    _still_works(kernel)


def test_flood_on_stderr_is_cut_off_too():
    cap = 1 << 16
    res = run_python(
        "import sys\nwhile True:\n    sys.stderr.write('e' * 4096)",
        timeout_s=FAST_S,
        max_output_bytes=cap,
    )
    assert res.status == "output_limit"
    assert res.stderr_truncated and len(res.stderr) == cap and res.stdout == ""


@pytest.mark.parametrize("kernel", MODES)
def test_huge_file_hits_the_file_size_limit(kernel):
    res = run_python(
        "with open('big.bin', 'wb') as f:\n    f.write(b'0' * (40 << 20))",
        timeout_s=FAST_S,
        file_size_mb=16,
        kernel_isolation=kernel,
    )
    assert res.status == "output_limit"
    assert "16 MB" in res.reason


PRIVATE_TMPFS = ("/tmp/", "/var/tmp/", "/dev/shm/", "/run/lock/")


@pytest.mark.parametrize("kernel", MODES)
def test_writing_outside_the_working_directory_never_reaches_the_host(kernel):
    token = uuid.uuid4().hex
    in_tmp = Path("/tmp") / f"p3-escape-{token}"
    in_repo = REPO / f"p3-escape-{token}"
    try:
        res_tmp = run_python(
            f"open({str(in_tmp)!r}, 'w').write('x')\nprint('wrote')",
            timeout_s=FAST_S,
            kernel_isolation=kernel,
        )
        res_repo = run_python(
            f"open({str(in_repo)!r}, 'w').write('x')", timeout_s=FAST_S, kernel_isolation=kernel
        )
        assert not in_tmp.exists() and not in_repo.exists()
        if "mountns" in res_tmp.isolation:  # /tmp is a private tmpfs that vanishes with the program
            assert res_tmp.status == "ok"
        else:
            assert res_tmp.status == "blocked"
        _assert_host_path_protected(res_repo)
    finally:
        for p in (in_tmp, in_repo):
            p.unlink(missing_ok=True)
    res = run_python(
        f"import os\nos.remove({str(REPO / 'pyproject.toml')!r})",
        timeout_s=FAST_S,
        kernel_isolation=kernel,
    )
    _assert_host_path_protected(res)
    assert (REPO / "pyproject.toml").exists()


def _assert_host_path_protected(res):
    """Writing into the checkout is refused; where the checkout lies under a directory the sandbox
    replaces with a private tmpfs (a clone under /tmp), the program cannot even see it."""
    if "mountns" in res.isolation and str(REPO).startswith(PRIVATE_TMPFS):
        assert res.status == "error" and "No such file" in res.reason, res
    else:
        assert res.status == "blocked", res
        assert any(w in res.reason for w in ("read-only", "permission", "working directory"))


@pytest.mark.parametrize("kernel", MODES)
def test_parent_environment_is_not_visible(kernel, monkeypatch):
    secret = f"p3-secret-{uuid.uuid4().hex}"
    monkeypatch.setenv("P3_SANDBOX_SECRET", secret)
    code = (
        "import os\n"
        "print(dict(os.environ))\n"
        "print(open('/proc/%d/environ' % os.getppid(), 'rb').read())\n"
    )
    res = run_python(code, timeout_s=FAST_S, kernel_isolation=kernel)
    assert secret not in res.stdout and secret not in res.stderr
    assert "P3_SANDBOX_SECRET" not in res.stdout
    assert res.status == "blocked"


@pytest.mark.parametrize("kernel", MODES)
def test_socket_to_a_listening_port_fails(kernel):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        server.setblocking(False)
        port = server.getsockname()[1]
        code = (
            "import socket\n"
            f"s = socket.create_connection(('127.0.0.1', {port}), timeout=2)\n"
            "s.sendall(b'leak')\n"
        )
        res = run_python(code, timeout_s=FAST_S, kernel_isolation=kernel)
        assert res.status == "blocked"
        assert "network" in res.reason
        with pytest.raises(BlockingIOError):
            server.accept()  # nobody connected


KILL_PARENT = {
    "kill": "import os\nos.kill(os.getppid(), 9)",
    "pidfd": "import os, signal\nsignal.pidfd_send_signal(os.pidfd_open(os.getppid()), 9)",
}


@pytest.mark.parametrize("how", sorted(KILL_PARENT))
@pytest.mark.parametrize("kernel", MODES)
def test_killing_the_parent_is_refused(kernel, how):
    res = run_python(KILL_PARENT[how], timeout_s=FAST_S, kernel_isolation=kernel)
    assert res.status == "blocked", res
    assert "not permitted" in res.reason or "signalling" in res.reason
    _still_works(kernel)


@pytest.mark.parametrize("kernel", MODES)
def test_killing_its_own_process_group_only_kills_itself(kernel):
    res = run_python(
        "import os\nprint('before', flush=True)\nos.killpg(0, 9)",
        timeout_s=FAST_S,
        kernel_isolation=kernel,
    )
    assert res.status == "killed"
    assert res.reason == "killed by SIGKILL" and res.returncode == -9
    assert res.stdout == "before\n"
    _still_works(kernel)


@pytest.mark.parametrize("kernel", MODES)
def test_os_exit_is_an_error_with_its_code(kernel):
    res = run_python("import os\nos._exit(3)", timeout_s=FAST_S, kernel_isolation=kernel)
    assert (res.status, res.returncode, res.reason) == ("error", 3, "exit code 3")


@pytest.mark.parametrize("kernel", MODES)
def test_deep_recursion_is_an_error(kernel):
    res = run_python(
        "def f(n):\n    return f(n + 1)\nf(0)", timeout_s=FAST_S, kernel_isolation=kernel
    )
    assert res.status == "error"
    assert res.reason.startswith("RecursionError")


def test_unbounded_recursion_with_a_raised_limit_is_contained():
    res = run_python(
        "import sys\nsys.setrecursionlimit(10 ** 8)\ndef f(n):\n    return f(n + 1)\nf(0)",
        timeout_s=HANG_S * 2,
        memory_mb=128,
    )
    assert res.status in ("memory", "killed", "timeout")
    _still_works(True)


def test_ctypes_is_blocked_when_only_guards_protect():
    res = run_python("import ctypes\nctypes.CDLL(None).kill(1, 9)", kernel_isolation=False)
    assert res.status == "blocked" and "ctypes" in res.reason


@pytest.mark.skipif(os.geteuid() != 0, reason="kernel layers need root")
def test_as_root_every_kernel_layer_is_active():
    res = run_python("import os\nprint(os.getuid(), os.getgid(), os.getgroups())", timeout_s=FAST_S)
    assert res.status == "ok", res
    if "netns" not in res.isolation:
        pytest.skip(f"namespaces refused on this machine: {res.isolation}")
    assert {"netns", "mountns", "uid", "no_new_privs", "readonly_root"} <= set(res.isolation)
    uid, gid, groups = res.stdout.split(" ", 2)
    assert int(uid) == res.uid and int(gid) == res.uid and uid != "0"
    assert groups.strip() == "[]"
    assert not any(layer.startswith("audit_hook") for layer in res.isolation)


def test_a_failed_setup_is_a_sandbox_error_and_runs_nothing(monkeypatch):
    import p3_pruning.sandbox.runner as runner

    monkeypatch.setattr(runner, "_pick_uid", lambda: 2**32 - 1)  # "-1": would mean "keep root"
    res = run_python("print('ran')", timeout_s=FAST_S)
    assert res.status == "sandbox_error"
    assert "not an ordinary uid" in res.reason
    assert res.stdout == ""


# --------------------------------------------------------------------------------------------------
# APPS test cases


def test_output_comparison_normalises_whitespace_and_numbers():
    assert normalise_lines("  1   2 \n\n3\n\n") == ["1 2", "", "3"]
    assert normalise_lines(["a b", "c"]) == ["a b", "c"]
    assert stdout_matches("1 2\r\n3  \n\n", "1   2\n3")
    assert stdout_matches("3\n4\n", ["3", "4"])
    assert stdout_matches("0.3333333\n", "0.33333333")
    assert not stdout_matches("12\n", "1 2\n")
    assert not stdout_matches("1\n2\n", "1\n")
    assert not stdout_matches("0.34\n", "0.33")
    assert not stdout_matches("YES\n", "yes\n")


def test_return_value_comparison_is_lenient_on_tuples_and_wrapping():
    assert return_value_matches((1, 2), [1, 2])
    assert return_value_matches([(1, 2), (3, 4)], [[[1, 2], [3, 4]]])
    assert return_value_matches(5, [5])
    assert return_value_matches([5], [5])
    assert return_value_matches(0.1 + 0.2, [0.3])
    assert return_value_matches({"a": (1,)}, {"a": [1]})
    assert not return_value_matches(True, [1])  # a boolean is not the number 1
    assert not return_value_matches([5, 6], [5])
    assert not return_value_matches("5", [5])
    assert not return_value_matches(None, [[0, 1]])


def test_stdin_stdout_cases_pass_and_fail_individually():
    code = "n = int(input())\nfor i in range(n):\n    print(i * i, end='  \\n')\n"
    tests = {
        "inputs": ["3\n", ["2"], "1\n"],
        "outputs": ["0\n1\n4\n", ["0", "1"], "5\n"],
    }
    results = run_test_cases(code, json.dumps(tests), timeout_s=FAST_S)
    assert [r.passed for r in results] == [True, True, False]
    assert [r.status for r in results] == ["passed", "passed", "wrong_answer"]
    assert results[2].reason == "output differs at line 1 (1 lines, expected 1)"
    assert [r.index for r in results] == [0, 1, 2]


def test_a_crash_or_hang_in_one_case_hides_no_other_result():
    code = (
        "import os\n"
        "x = int(input())\n"
        "if x == 2:\n    os._exit(7)\n"
        "if x == 3:\n    while True:\n        pass\n"
        "print(x * 10)\n"
    )
    tests = {"inputs": ["1", "2", "3", "4"], "outputs": ["10", "20", "30", "40"]}
    results = run_test_cases(code, tests, timeout_s=HANG_S)
    assert [r.status for r in results] == ["passed", "error", "timeout", "passed"]
    assert results[1].reason == "exit code 7"
    assert results[1].run.returncode == 7


def test_call_based_function_and_solution_class():
    func = "def add(a, b):\n    print('debug output is ignored')\n    return a + b\n"
    tests = {
        "fn_name": "add",
        "inputs": [[1, 2], [3, 4], [[1], [2]]],
        "outputs": [[3], 7, [[1, 2]]],
    }
    results = run_test_cases(func, tests, timeout_s=FAST_S)
    assert [r.passed for r in results] == [True, True, True]
    assert [r.got for r in results] == [3, 7, [1, 2]]

    klass = (
        "class Solution:\n"
        "    def twoSum(self, nums, target):\n"
        "        seen = {}\n"
        "        for i, x in enumerate(nums):\n"
        "            if target - x in seen:\n"
        "                return (seen[target - x], i)\n"
        "            seen[x] = i\n"
    )
    tests = {
        "fn_name": "twoSum",
        "inputs": [[[2, 7, 11, 15], 9], [[3, 2, 4], 6], [[1, 2], 5]],
        "outputs": [[[0, 1]], [1, 2], [[0, 1]]],
    }
    results = run_test_cases(klass, tests, timeout_s=FAST_S)
    assert [r.passed for r in results] == [True, True, False]
    assert results[2].status == "wrong_answer"
    assert results[2].reason == "returned None, expected [[0, 1]]"


def test_call_based_crash_missing_function_and_fake_equality():
    code = (
        "import os\n"
        "def solve(x):\n"
        "    if x == 0:\n        raise ZeroDivisionError('no')\n"
        "    if x == 1:\n        os._exit(0)\n"
        "    return x\n"
    )
    tests = {"fn_name": "solve", "inputs": [[0], [1], [2]], "outputs": [[0], [1], [2]]}
    results = run_test_cases(code, tests, timeout_s=FAST_S)
    assert [r.status for r in results] == ["error", "error", "passed"]
    assert results[0].reason == "ZeroDivisionError: no"
    assert results[1].reason == "the program exited before the function returned"

    hijack = "import sys\nsys.stdout = None\ndef solve(x):\n    return [x]\n"
    results = run_test_cases(hijack, {"fn_name": "solve", "inputs": [[4]], "outputs": [[4]]})
    assert results[0].passed and results[0].got == [4]

    missing = run_test_cases(
        "def other():\n    pass\n",
        {"fn_name": "solve", "inputs": [[1]], "outputs": [[1]]},
        timeout_s=FAST_S,
    )
    assert missing[0].status == "error" and "no function or Solution method" in missing[0].reason

    cheat = (
        "class Anything:\n    def __eq__(self, other):\n        return True\n"
        "def solve(x):\n    return Anything()\n"
    )
    results = run_test_cases(cheat, {"fn_name": "solve", "inputs": [[1]], "outputs": [[1]]})
    assert not results[0].passed and results[0].status == "wrong_answer"
    assert "not plain data" in results[0].reason


def test_malformed_tests_are_rejected_clearly():
    with pytest.raises(ValueError, match="2 inputs but 1 outputs"):
        run_test_cases("print(1)", {"inputs": ["1", "2"], "outputs": ["1"]})
    with pytest.raises(ValueError, match="lacks key"):
        run_test_cases("print(1)", {"inputs": ["1"]})
    with pytest.raises(ValueError, match="not valid JSON"):
        run_test_cases("print(1)", "{inputs")
    with pytest.raises(ValueError, match="fn_name must be an identifier"):
        run_test_cases("print(1)", {"inputs": [], "outputs": [], "fn_name": "a b"})
