"""The driver's bookkeeping with a scripted backend: skips, retries and recorded attempts."""

from __future__ import annotations

import json

from xlcl.sweep import RunState, expand, run_sweep
from xlcl.sweep.spec import Sweep
from xlcl.sweep.state import Heartbeat, begin_attempt
from xlcl.sweep.worker import Outcome

BASE = {"model": "m", "method": "vanilla", "order": ["en-US", "de-DE"]}


class Scripted:
    """Answers each run's attempts from a script; DONE writes the run's marker."""

    name = "scripted"

    def __init__(self, script):
        self.script = script
        self.calls = []

    def run(self, jobs):
        self.calls.append([job.run_id for job in jobs])
        outcomes = []
        for job in jobs:
            state = self.script[job.run_id].pop(0)
            if state is RunState.DONE:
                job.run_dir.mkdir(parents=True, exist_ok=True)
                (job.run_dir / "DONE").write_text("")
            outcomes.append(Outcome(job.run_id, state, f"{state.value}!", recorded=False))
        return outcomes


def make_sweep(tmp_path):
    runs = expand(BASE, {"train.seed": [1, 2, 3]}, [], tmp_path / "results")
    return Sweep(runs=runs, results=tmp_path / "results", source="test")


def test_failures_are_retried_and_every_attempt_recorded(tmp_path):
    sweep = make_sweep(tmp_path)
    a, b, c = (run.run_id for run in sweep.runs)
    script = {
        a: [RunState.DONE],
        b: [RunState.INTERRUPTED, RunState.DONE],
        c: [RunState.FAILED, RunState.FAILED],
    }
    backend = Scripted(script)
    entries = run_sweep(sweep, backend, retries=1)
    assert backend.calls == [[a, b, c], [b, c]]
    states = {entry.run["run_id"]: entry.status for entry in entries}
    assert states[a].state is RunState.DONE and states[a].attempts == 1
    assert states[b].state is RunState.DONE and states[b].attempts == 2
    assert states[c].state is RunState.FAILED and states[c].attempts == 2
    assert states[c].error == "failed!"
    recorded = json.loads((sweep.results / b / "sweep-state.json").read_text())
    assert [x["outcome"] for x in recorded["attempts"]] == ["interrupted", "done"]
    listed = json.loads((sweep.results / "sweep.json").read_text())
    assert [run["run_id"] for run in listed["runs"]] == [a, b, c]


def test_done_runs_are_skipped_and_running_ones_left_alone(tmp_path):
    sweep = make_sweep(tmp_path)
    a, b, c = (run.run_id for run in sweep.runs)
    (sweep.results / a).mkdir(parents=True)
    (sweep.results / a / "DONE").write_text("")
    begin_attempt(sweep.results / b, "local", None)
    backend = Scripted({c: [RunState.DONE]})
    with Heartbeat(sweep.results / b, interval=0.05):
        entries = run_sweep(sweep, backend)
    assert backend.calls == [[c]]
    assert entries[0].status.state is RunState.DONE
