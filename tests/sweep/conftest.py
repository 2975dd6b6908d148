"""A three-run sweep that every backend test drives: one run finishes, one fails, one is killed.

The failing run reads a data source that does not exist; the killed run kills itself with
SIGKILL after its step 1 (`killing_after_step`: ``kill_hook/sitecustomize.py`` in its
worker). The first sweep leaves them failed and interrupted; the rerun skips the finished
run, resumes the killed one from step 1, and fails the broken one again.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from massive_fixture import write_massive_dir
from xlcl.sweep import Backend, RunState, RunStatus, Sweep, load_sweep, run_sweep

ORDER = ["en-US", "de-DE"]
KILL_HOOK = Path(__file__).parent / "kill_hook"
KILL_VARIABLE = "XLCL_TEST_KILL_AFTER_STEP"  # read by kill_hook/sitecustomize.py


@contextlib.contextmanager
def killing_after_step(run_id: str, step: int) -> Iterator[dict[str, str]]:
    """In the block, the worker of run `run_id` SIGKILLs itself once step `step` is done.

    Workers started from this process inherit the setting; the variables that make it are
    yielded for workers that do not (Ray's, started by the cluster).
    """
    path = [str(KILL_HOOK), *filter(None, [os.environ.get("PYTHONPATH")])]
    environment = {"PYTHONPATH": os.pathsep.join(path), KILL_VARIABLE: f"{run_id}:{step}"}
    with pytest.MonkeyPatch.context() as patch:
        for name, value in environment.items():
            patch.setenv(name, value)
        yield environment


def sweep_document(tiny_model: Path, massive_dir: Path) -> dict[str, object]:
    """The sweep: VANILLA (finishes), SHARED LoRA 4 (killed), VANILLA on no data (fails)."""
    return {
        "base": {
            "model": str(tiny_model),
            "method": "vanilla",
            "order": ORDER,
            "data": {"source": str(massive_dir)},
            "train": {
                "epochs": 1,
                "patience": 1,
                "batch_size": 4,
                "learning_rate": 1e-3,
                "threads": 1,
            },
        },
        "variants": [
            {"method": "vanilla"},
            {"method": "shared-lora", "rank": 4},
            {"method": "vanilla", "data.source": str(massive_dir / "missing")},
        ],
    }


@pytest.fixture(scope="session")
def massive_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_massive_dir(tmp_path_factory.mktemp("massive"))


@pytest.fixture(scope="session")
def sweep_file(
    tiny_model: Path, massive_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    path = tmp_path_factory.mktemp("sweep") / "three.yaml"
    path.write_text(yaml.safe_dump(sweep_document(tiny_model, massive_dir)))
    return path


@dataclass
class Scenario:
    """The sweep, its three run ids, and the statuses after the first run and the rerun."""

    sweep: Sweep
    good: str
    killed: str
    broken: str
    first: dict[str, RunStatus]
    second: dict[str, RunStatus]

    def check_first_round(self) -> None:
        """The failing and the killed run do not stop the finished one."""
        assert self.first[self.good].state is RunState.DONE
        assert self.first[self.good].steps_done == len(ORDER)
        assert self.first[self.broken].state is RunState.FAILED
        assert "does not exist" in (self.first[self.broken].error or "")
        assert self.first[self.killed].state is RunState.INTERRUPTED
        assert self.first[self.killed].steps_done == 1  # killed after step 1, before step 2
        assert self.first[self.killed].error

    def check_second_round(self) -> None:
        """The rerun completes the sweep: the killed run resumes after step 1."""
        assert self.second[self.good].state is RunState.DONE
        assert self.second[self.good].attempts == 1  # skipped, not run again
        assert self.second[self.killed].state is RunState.DONE
        assert self.second[self.killed].attempts == 2
        assert self.second[self.broken].state is RunState.FAILED
        assert self.second[self.broken].attempts == 2
        manifest = json.loads((self.sweep.results / self.killed / "manifest.json").read_text())
        assert manifest["status"] == "done"
        assert [entry["after_step"] for entry in manifest["resumed"]] == [1]
        state = json.loads((self.sweep.results / self.killed / "sweep-state.json").read_text())
        assert [a["outcome"] for a in state["attempts"]] == ["interrupted", "done"]


# A backend for a results directory, given the environment its workers need beyond ours.
MakeBackend = Callable[[Path, dict[str, str]], Backend]
RunScenario = Callable[[MakeBackend, str], Scenario]


@pytest.fixture(scope="session")
def run_scenario(sweep_file: Path, tmp_path_factory: pytest.TempPathFactory) -> RunScenario:
    """Run the three-run sweep twice on the backends `make` builds, killing a run the first time."""

    def run(make: MakeBackend, name: str) -> Scenario:
        sweep = load_sweep(sweep_file, results=tmp_path_factory.mktemp(name) / "results")
        good, killed, broken = (config.run_id for config in sweep.runs)
        with killing_after_step(killed, 1) as environment:
            backend = make(sweep.results, environment)
            first = {entry.run["run_id"]: entry.status for entry in run_sweep(sweep, backend)}
        backend = make(sweep.results, {})
        second = {entry.run["run_id"]: entry.status for entry in run_sweep(sweep, backend)}
        return Scenario(sweep, good, killed, broken, first, second)

    return run
