"""MLflow runs of killed processes are ended as KILLED by the next run; a resumed run names the run
it resumes. A run of a live process (a second `kedro run` beside this one) is left alone."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from p3_pruning.hooks import MlflowRunStateHook


@pytest.fixture
def store(tmp_path, monkeypatch):
    # set the URI globally too: an earlier Kedro run in this process (kedro-mlflow) leaves its own
    # as mlflow's tracking URI, which would win over the environment variable
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    previous = mlflow.get_tracking_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    experiment = MlflowClient().create_experiment("p3_pruning")
    yield MlflowClient(), experiment
    while mlflow.active_run() is not None:
        mlflow.end_run()
    mlflow.set_tracking_uri(previous)


def dead_pid() -> str:
    """The id of a process that has exited (as a kill -9'd run's is)."""
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    return done.stdout.strip()


def status(client, run) -> str:
    return client.get_run(run.info.run_id).info.status


def test_runs_of_gone_processes_are_killed_and_the_resume_is_tagged(store):
    client, experiment = store
    host = socket.gethostname()
    failed = client.create_run(experiment, run_name="p3")
    client.set_terminated(failed.info.run_id, status="FAILED")
    killed = client.create_run(
        experiment, run_name="p3", tags={"p3.host": host, "p3.pid": dead_pid()}
    )
    beside = client.create_run(
        experiment, run_name="p3", tags={"p3.host": host, "p3.pid": str(os.getpid())}
    )
    elsewhere = client.create_run(
        experiment, run_name="p3", tags={"p3.host": "other-host", "p3.pid": dead_pid()}
    )
    untagged = client.create_run(experiment, run_name="p3")

    with mlflow.start_run(experiment_id=experiment, run_name="p3") as run:
        MlflowRunStateHook().before_pipeline_run(
            {"only_missing_outputs": True, "pipeline_names": ["p3"]}
        )
        tags = client.get_run(run.info.run_id).data.tags

    assert status(client, killed) == "KILLED"
    assert client.get_run(killed.info.run_id).data.tags["p3.ended_by"] == run.info.run_id
    assert client.get_run(killed.info.run_id).info.end_time is not None
    # a live process, another host, no tags: cannot be known dead, left as they are
    assert [status(client, r) for r in (beside, elsewhere, untagged)] == ["RUNNING"] * 3
    assert tags["p3.resumes"] == killed.info.run_id  # the latest unfinished run before it
    assert (tags["p3.host"], tags["p3.pid"]) == (host, str(os.getpid()))


def test_a_fresh_run_is_not_tagged_as_a_resume(store):
    client, experiment = store
    client.set_terminated(client.create_run(experiment, run_name="p3").info.run_id, status="FAILED")
    with mlflow.start_run(experiment_id=experiment, run_name="p3") as run:
        MlflowRunStateHook().before_pipeline_run(
            {"only_missing_outputs": False, "from_nodes": None}
        )
        assert "p3.resumes" not in client.get_run(run.info.run_id).data.tags


SIGNALLED = """
import os, signal, sys, time
import mlflow
from p3_pruning.hooks import MlflowRunStateHook

mlflow.set_tracking_uri(sys.argv[1])
run = mlflow.start_run(experiment_id=sys.argv[2], run_name="p3")  # as kedro-mlflow opens it
MlflowRunStateHook().before_pipeline_run({"pipeline_names": ["p3"]})
print(run.info.run_id, flush=True)
os.kill(os.getpid(), getattr(signal, sys.argv[3]))
time.sleep(30)
"""


@pytest.mark.parametrize("name, code", [("SIGTERM", -15), ("SIGINT", -2)])
def test_a_signalled_run_is_ended_as_killed_at_once(store, name, code):
    client, experiment = store
    done = subprocess.run(
        [sys.executable, "-c", SIGNALLED, mlflow.get_tracking_uri(), experiment, name],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == code, done.stderr[-2000:]  # the signal took its course
    if name == "SIGINT":
        assert "KeyboardInterrupt" in done.stderr
    run = client.get_run(done.stdout.split()[0])
    assert run.info.status == "KILLED" and run.info.end_time is not None


def test_an_ignored_signal_stays_ignored():
    """Under nohup SIGHUP is ignored: the run goes on, so its MLflow run must not be ended."""
    import signal

    from p3_pruning.hooks import end_run_on_signals, restore_signals

    before = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        previous = end_run_on_signals("some-run")
        assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN and signal.SIGHUP not in previous
        assert callable(signal.getsignal(signal.SIGTERM))  # the others are caught
        restore_signals(previous)
        assert signal.getsignal(signal.SIGTERM) == previous[signal.SIGTERM]
    finally:
        signal.signal(signal.SIGHUP, before)
