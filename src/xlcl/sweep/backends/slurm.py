"""Slurm through submitit: the runs as one job array, a GPU per task, requeued when preempted.

A task that is preempted or reaches its time limit is requeued by submitit
(`SlurmRun.checkpoint` resubmits the same run); the run then resumes from its last
finished step. ``cluster="local"`` runs the same array with submitit's LocalExecutor
(processes on this machine), which is how the tests run it without Slurm. Submitit's own
files (scripts, pickles, logs) go to ``RESULTS/.submitit/``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import submitit

from xlcl.sweep.state import RunState
from xlcl.sweep.worker import Job, Outcome, execute

SUBMITIT_FOLDER = ".submitit"


class SlurmRun(submitit.helpers.Checkpointable):
    """A task of the array: run one job; on preemption or timeout, requeue the same job."""

    def __call__(self, job: Job) -> Outcome:
        return execute(job, job_id=submitit.JobEnvironment().job_id)

    def checkpoint(self, job: Job) -> submitit.helpers.DelayedSubmission:
        # Nothing to save here: the run checkpoints every finished step itself.
        return submitit.helpers.DelayedSubmission(self, job)


class SlurmBackend:
    """Submits the jobs as a Slurm job array (or a local one) and waits for every task."""

    name = "slurm"

    def __init__(
        self,
        results: Path,
        cluster: str = "slurm",
        max_parallel: int | None = None,
        gpus_per_run: int = 1,
        timeout_min: int = 24 * 60,
        parameters: dict[str, Any] | None = None,
    ) -> None:
        self.folder = results / SUBMITIT_FOLDER / "%j"
        self.cluster = cluster
        self.max_parallel = max_parallel
        self.gpus_per_run = gpus_per_run
        self.timeout_min = timeout_min
        self.parameters = parameters or {}

    def executor(self) -> submitit.AutoExecutor:
        """The configured executor: one node, one task and `gpus_per_run` GPUs per run."""
        executor = submitit.AutoExecutor(folder=self.folder, cluster=self.cluster)
        settings: dict[str, Any] = {
            "name": "xlcl-sweep",
            "nodes": 1,
            "tasks_per_node": 1,
            "gpus_per_node": self.gpus_per_run,
            "timeout_min": self.timeout_min,
        }
        if self.max_parallel is not None:
            settings["slurm_array_parallelism"] = self.max_parallel
        if self.cluster == "slurm":
            settings["slurm_signal_delay_s"] = 120  # time to requeue before the kill
        executor.update_parameters(**settings, **self.parameters)
        return executor

    def run(self, jobs: Sequence[Job]) -> list[Outcome]:
        """Submit `jobs` as one array and wait; a task that died unrecorded is interrupted."""
        if not jobs:
            return []
        submitted = self.executor().map_array(SlurmRun(), list(jobs))
        outcomes = []
        for job, task in zip(jobs, submitted, strict=True):
            try:
                outcomes.append(task.result())
            except Exception as error:  # the task died: killed, out of memory, node failure
                message = f"{self.cluster} job {task.job_id}: {type(error).__name__}: {error}"
                outcomes.append(
                    Outcome(job.run_id, RunState.INTERRUPTED, _first_lines(message), False)
                )
        return outcomes


def _first_lines(text: str, lines: int = 4) -> str:
    return " ".join(text.strip().splitlines()[:lines])
