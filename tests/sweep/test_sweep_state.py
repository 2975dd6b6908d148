"""Run states from the files a sweep keeps: queued, running, done, failed, interrupted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta

import pytest

from xlcl.sweep.state import (
    HEARTBEAT,
    AlreadyRunning,
    Heartbeat,
    RunState,
    begin_attempt,
    end_attempt,
    now,
    run_lock,
    run_status,
)


def test_nothing_recorded_is_queued(tmp_path):
    status = run_status(tmp_path / "abc", steps_total=3)
    assert (status.state, status.attempts, status.steps_done) == (RunState.QUEUED, 0, None)


@pytest.mark.parametrize(
    ("status", "state"),
    [
        ("failed", RunState.FAILED),
        ("interrupted", RunState.INTERRUPTED),
        ("running", RunState.QUEUED),
    ],
)
def test_a_run_outside_a_sweep_has_its_manifests_state(tmp_path, status, state):
    # `xlcl run` writes no sweep state: its manifest says how it ended. A manifest's
    # "running" may be a run killed by SIGKILL: a sweep must still take it up (queued).
    manifest = {"run_id": tmp_path.name, "status": status, "error": "DataError: bad row"}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    found = run_status(tmp_path, steps_total=3)
    assert found.state is state
    assert found.error == (None if state is RunState.QUEUED else "DataError: bad row")


def test_a_live_heartbeat_is_running_and_done_wins(tmp_path):
    begin_attempt(tmp_path, "local", None)
    with Heartbeat(tmp_path, interval=0.05):
        status = run_status(tmp_path, steps_total=3)
    assert status.state is RunState.RUNNING
    assert status.where == f"{os.uname().nodename}:{os.getpid()}"
    (tmp_path / "DONE").write_text("")
    assert run_status(tmp_path, 3).state is RunState.DONE


def test_a_stale_heartbeat_from_another_host_is_interrupted(tmp_path):
    begin_attempt(tmp_path, "slurm", "42_1")
    old = (now() - timedelta(seconds=300)).isoformat(timespec="seconds")
    beat = {"host": "elsewhere", "pid": 1, "at": old}
    (tmp_path / HEARTBEAT).write_text(json.dumps(beat))
    status = run_status(tmp_path, 3, stale_after=60)
    assert status.state is RunState.INTERRUPTED
    assert status.error.startswith("heartbeat stale for 30")
    assert run_status(tmp_path, 3, stale_after=600).state is RunState.RUNNING


def test_a_dead_process_on_this_host_is_interrupted_at_once(tmp_path):
    begin_attempt(tmp_path, "local", None)
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    beat = {"host": os.uname().nodename, "pid": int(gone.stdout), "at": now().isoformat()}
    (tmp_path / HEARTBEAT).write_text(json.dumps(beat))
    status = run_status(tmp_path, 3)
    assert status.state is RunState.INTERRUPTED and "is gone" in status.error


def test_attempts_are_recorded_and_an_unclosed_one_is_closed_by_the_next(tmp_path):
    begin_attempt(tmp_path, "local", None)
    end_attempt(tmp_path, RunState.FAILED, "ValueError: boom", "local")
    assert run_status(tmp_path, 3).error == "ValueError: boom"
    begin_attempt(tmp_path, "slurm", "7")  # killed without a word
    begin_attempt(tmp_path, "slurm", "7")  # requeued
    state = json.loads((tmp_path / "sweep-state.json").read_text())
    assert [a["outcome"] for a in state["attempts"]] == ["failed", "interrupted", None]
    assert [a["attempt"] for a in state["attempts"]] == [1, 2, 3]


def _attempt(outcome, started, ended):
    return {"outcome": outcome, "started_at": started, "ended_at": ended}


def test_a_runs_time_is_its_attempts_and_the_cut_ones_are_told_apart(tmp_path):
    day = "2026-11-30T"
    attempts = [
        _attempt("interrupted", f"{day}10:14:44+00:00", f"{day}10:33:21+00:00"),  # 1,117 s
        _attempt("failed", None, f"{day}10:40:00+00:00"),  # died before it began: 0 s
        _attempt("failed", f"{day}10:50:00+00:00", f"{day}10:50:30+00:00"),  # 30 s
        _attempt("done", f"{day}11:30:19+00:00", f"{day}12:05:56+00:00"),  # 2,137 s
    ]
    state = {"run_id": tmp_path.name, "state": "done", "attempts": attempts}
    (tmp_path / "sweep-state.json").write_text(json.dumps(state))
    status = run_status(tmp_path, 3)
    assert (status.seconds, status.seconds_cut) == (1117 + 30 + 2137, 1117 + 30)
    # A running attempt counts up to now.
    begin_attempt(tmp_path, "local", None)
    with Heartbeat(tmp_path, interval=0.05):
        running = run_status(tmp_path, 3)
    assert running.state is RunState.RUNNING
    assert 1117 + 30 + 2137 <= running.seconds <= 1117 + 30 + 2137 + 60
    assert running.seconds_cut == 1117 + 30
    # One killed without a word ran until its last heartbeat, and was cut off.
    state = json.loads((tmp_path / "sweep-state.json").read_text())
    state["attempts"][-1]["started_at"] = f"{day}13:00:00+00:00"
    (tmp_path / "sweep-state.json").write_text(json.dumps(state))
    beat = {"host": "elsewhere", "pid": 1, "at": f"{day}13:10:00+00:00"}
    (tmp_path / HEARTBEAT).write_text(json.dumps(beat))
    killed = run_status(tmp_path, 3)
    assert killed.state is RunState.INTERRUPTED
    assert (killed.seconds, killed.seconds_cut) == (1117 + 30 + 2137 + 600, 1117 + 30 + 600)


def test_one_process_at_a_time_holds_a_run(tmp_path):
    with run_lock(tmp_path), pytest.raises(AlreadyRunning), run_lock(tmp_path):
        pass
    with run_lock(tmp_path):
        pass
