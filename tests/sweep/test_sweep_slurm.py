"""Slurm through submitit: its LocalExecutor always, a real Slurm where ``sinfo`` answers.

The real-Slurm test needs a running cluster whose nodes share this file system, with job
accounting (``sacct``): submitit learns that a task died (the killed run) only from
``sacct``, and without it waits forever. Elsewhere the test is skipped with the reason.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

submitit = pytest.importorskip("submitit")

from xlcl.sweep.backends.slurm import SlurmBackend, SlurmRun  # noqa: E402

pytestmark = pytest.mark.integration


def test_a_preempted_task_requeues_the_same_run():
    task = SlurmRun()
    resubmission = task.checkpoint("job")
    assert resubmission.function is task
    assert resubmission.args == ("job",)


def _slurm_answers() -> bool:
    for command in (["sinfo", "-h"], ["sacct", "-n", "-X", "--starttime", "now"]):
        if shutil.which(command[0]) is None:
            return False
        try:
            result = subprocess.run(command, capture_output=True, timeout=10, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return False
        if result.returncode != 0:
            return False
    return True


@pytest.mark.parametrize(
    "cluster",
    [
        "local",  # submitit's LocalExecutor: the same array, processes on this machine
        pytest.param(
            "slurm",
            marks=pytest.mark.skipif(
                not _slurm_answers(),
                reason="no Slurm cluster with accounting answers (sinfo, sacct)",
            ),
        ),
    ],
)
def test_submitit_runs_the_array_fails_kills_and_resumes(run_scenario, cluster):
    scenario = run_scenario(
        lambda results, env: SlurmBackend(results, cluster=cluster, gpus_per_run=0, timeout_min=10),
        f"submitit-{cluster}",
    )
    scenario.check_first_round()
    scenario.check_second_round()
    state = (scenario.sweep.results / scenario.killed / "sweep-state.json").read_text()
    assert '"backend": "slurm"' in state
