"""Slurm through submitit: the runs as one job array, a GPU per task, requeued when preempted.

A task that is preempted or reaches its time limit is requeued by submitit
(`SlurmRun.checkpoint` resubmits the same run); the run then resumes from its last
finished step. With ``runs_per_gpu`` K > 1, a task holds one GPU and K runs
(`SlurmPackedRuns`): it runs them as K concurrent subprocesses, through the local backend
and its MPS daemon, and is requeued with the same K runs, each resuming on its own.
``cluster="local"`` runs the same array with submitit's LocalExecutor
(processes on this machine), which is how the tests run it without Slurm. Submitit's own
files (scripts, pickles, logs) go to ``RESULTS/.submitit/``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import submitit

from xlcl.sweep.backends import MPS_LOGS
from xlcl.sweep.backends.local import LocalBackend
from xlcl.sweep.backends.packing import gpu_memory, refuse_unfit
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


class SlurmPackedRuns(submitit.helpers.Checkpointable):
    """A task of the array holding one GPU: its runs at once, requeued together."""

    def __init__(self, mps_logs: Path) -> None:
        self.mps_logs = mps_logs

    def __call__(self, jobs: list[Job]) -> list[Outcome]:
        try:
            backend = LocalBackend(runs_per_gpu=len(jobs), mps_logs=self.mps_logs)
            if len(jobs) > 1:
                refuse_unfit([job.run_config() for job in jobs], len(jobs), gpu_memory())
        except ValueError as error:  # no GPU on the node, or too little memory on it
            return [Outcome(job.run_id, RunState.FAILED, str(error), False) for job in jobs]
        return backend.run(jobs)

    def checkpoint(self, jobs: list[Job]) -> submitit.helpers.DelayedSubmission:
        # Each run checkpoints its own finished steps; requeued, it resumes from the last.
        return submitit.helpers.DelayedSubmission(self, jobs)


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
        runs_per_gpu: int = 1,
    ) -> None:
        if runs_per_gpu > 1 and gpus_per_run != 1:
            raise ValueError(
                f"--runs-per-gpu {runs_per_gpu} packs runs onto one GPU a job: "
                f"--gpus-per-run must be 1, got {gpus_per_run}"
            )
        self.results = results
        self.folder = results / SUBMITIT_FOLDER / "%j"
        self.cluster = cluster
        self.max_parallel = max_parallel
        self.gpus_per_run = gpus_per_run
        self.timeout_min = timeout_min
        self.parameters = parameters or {}
        self.runs_per_gpu = runs_per_gpu

    def executor(self) -> submitit.AutoExecutor:
        """The configured executor: one node and one task per array task, with
        `gpus_per_run` GPUs (one, shared by `runs_per_gpu` runs, and a core per run)."""
        executor = submitit.AutoExecutor(folder=self.folder, cluster=self.cluster)
        settings: dict[str, Any] = {
            "name": "xlcl-sweep",
            "nodes": 1,
            "tasks_per_node": 1,
            "gpus_per_node": self.gpus_per_run,
            "timeout_min": self.timeout_min,
        }
        if self.runs_per_gpu > 1:
            settings["cpus_per_task"] = self.runs_per_gpu
        if self.max_parallel is not None:
            tasks = math.ceil(self.max_parallel / self.runs_per_gpu)
            settings["slurm_array_parallelism"] = tasks
        if self.cluster == "slurm":
            settings["slurm_signal_delay_s"] = 120  # time to requeue before the kill
        executor.update_parameters(**{**settings, **self.parameters})
        return executor

    def run(self, jobs: Sequence[Job]) -> list[Outcome]:
        """Submit `jobs` as one array and wait; a task that died unrecorded is interrupted."""
        if not jobs:
            return []
        tasks: list[submitit.Job[Any]]  # each returns an Outcome (K = 1) or a list of them
        if self.runs_per_gpu == 1:
            chunks = [[job] for job in jobs]
            tasks = self.executor().map_array(SlurmRun(), list(jobs))
        else:
            chunks = pack(jobs, self.runs_per_gpu)
            tasks = self.executor().map_array(SlurmPackedRuns(self.results / MPS_LOGS), chunks)
        outcomes: list[Outcome] = []
        for chunk, task in zip(chunks, tasks, strict=True):
            try:
                result = task.result()
            except Exception as error:  # the task died: killed, out of memory, node failure
                message = f"{self.cluster} job {task.job_id}: {type(error).__name__}: {error}"
                outcomes += [
                    Outcome(job.run_id, RunState.INTERRUPTED, _first_lines(message), False)
                    for job in chunk
                ]
                continue
            outcomes += result if isinstance(result, list) else [result]
        return outcomes


def pack(jobs: Sequence[Job], runs_per_gpu: int) -> list[list[Job]]:
    """`jobs` in order, in chunks of `runs_per_gpu` (the last may be smaller)."""
    return [list(jobs[start : start + runs_per_gpu]) for start in range(0, len(jobs), runs_per_gpu)]


def _first_lines(text: str, lines: int = 4) -> str:
    return " ".join(text.strip().splitlines()[:lines])
