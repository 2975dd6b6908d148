"""``xlcl sweep --group-lora``: LoRA runs that share an encoder run as one job, and a
group that is killed resumes each of its runs."""

from __future__ import annotations

import json

import pytest
import yaml

from sweep.conftest import killing_after_step, sweep_document
from xlcl.sweep import RunState, load_sweep, run_sweep
from xlcl.sweep.backends.local import LocalBackend
from xlcl.sweep.worker import Job, job_from_json, job_to_json


@pytest.fixture
def lora_sweep(tiny_model, massive_dir, tmp_path):
    """VANILLA, and SHARED LoRA at ranks 4 and 2 (one group)."""
    document = sweep_document(tiny_model, massive_dir)
    document["variants"] = [
        {"method": "vanilla"},
        {"method": "shared-lora", "rank": 4},
        {"method": "shared-lora", "rank": 2},
    ]
    path = tmp_path / "lora.yaml"
    path.write_text(yaml.safe_dump(document))
    return load_sweep(path, results=tmp_path / "results")


def test_a_group_job_survives_its_json_round_trip(lora_sweep):
    _, *shared = lora_sweep.runs
    job = Job.of_group(shared, "local")
    assert job.run_id == shared[0].run_id
    again = job_from_json(job_to_json(job))
    assert again == job
    assert [config.run_id for config in again.run_configs()] == [c.run_id for c in shared]
    assert Job.of_group(shared[:1], "local") == Job.of(shared[0], "local")


def test_a_killed_group_resumes_each_run_and_the_rest_runs_apart(lora_sweep):
    vanilla, lead, other = (config.run_id for config in lora_sweep.runs)
    results = lora_sweep.results
    with killing_after_step(lead, 1):  # the group's process dies as a run starts step 2
        first = run_sweep(lora_sweep, LocalBackend(max_parallel=2, gpus=[]), group_size=8)
    states = {entry.run["run_id"]: entry.status.state for entry in first}
    assert states == {
        vanilla: RunState.DONE,
        lead: RunState.INTERRUPTED,
        other: RunState.INTERRUPTED,
    }
    log = next((results / lead / "logs").iterdir()).read_text()
    assert "training 2 runs over one encoder" in log
    second = run_sweep(lora_sweep, LocalBackend(max_parallel=2, gpus=[]), group_size=8)
    assert {entry.status.state for entry in second} == {RunState.DONE}
    for run_id in (lead, other):
        state = json.loads((results / run_id / "sweep-state.json").read_text())
        assert [a["outcome"] for a in state["attempts"]] == ["interrupted", "done"]
        manifest = json.loads((results / run_id / "manifest.json").read_text())
        assert manifest["status"] == "done"
        assert len(manifest["resumed"]) == 1  # from the last step it had finished
    vanilla_state = json.loads((results / vanilla / "sweep-state.json").read_text())
    assert len(vanilla_state["attempts"]) == 1
