"""Ray: a task per run, a GPU per task where the cluster has GPUs (1/K with ``runs_per_gpu`` K).

``address`` is passed to ``ray.init``: an existing cluster (``HOST:PORT``, ``auto``), or
``None`` for Ray's default (``RAY_ADDRESS``, else a running local cluster, else a new one
on this machine). A Ray session this backend opened is closed again when the jobs end; one
the caller opened is used as it is. Ray's own retries are off: the sweep driver retries.
Fractional GPUs are Ray's way of packing K tasks onto a GPU; Ray does not limit their
memory, so a packed task first checks that K runs fit in its GPU (`refuse_unfit`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import ray
from ray.exceptions import RayError, RayTaskError

from xlcl.sweep.backends.packing import gpu_memory, refuse_unfit
from xlcl.sweep.state import RunState
from xlcl.sweep.worker import Job, Outcome, execute


class RayBackend:
    """Runs each job as a Ray task and waits for all of them."""

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        max_parallel: int | None = None,
        gpus_per_run: float | None = None,
        init_options: dict[str, Any] | None = None,
        runs_per_gpu: int = 1,
    ) -> None:
        if runs_per_gpu > 1 and gpus_per_run not in (None, 1):
            raise ValueError(
                f"--runs-per-gpu {runs_per_gpu} packs runs onto one GPU: "
                f"--gpus-per-run must be 1, got {gpus_per_run}"
            )
        self.address = address
        self.max_parallel = max_parallel
        self.gpus_per_run = gpus_per_run
        self.init_options = init_options or {}
        self.runs_per_gpu = runs_per_gpu

    def run(self, jobs: Sequence[Job]) -> list[Outcome]:
        """Run `jobs` as tasks, at most `max_parallel` in flight (else as Ray schedules)."""
        if not jobs:
            return []
        opened = not ray.is_initialized()
        if opened:
            ray.init(address=self.address, log_to_driver=False, **self.init_options)
        try:
            return self._run(jobs)
        finally:
            if opened:
                ray.shutdown()

    def _run(self, jobs: Sequence[Job]) -> list[Outcome]:
        try:
            options = task_options(
                self.gpus_per_run, self.runs_per_gpu, ray.cluster_resources().get("GPU", 0)
            )
        except ValueError as error:  # packing asked of a cluster without GPUs
            return [Outcome(job.run_id, RunState.FAILED, str(error), False) for job in jobs]
        function = execute if self.runs_per_gpu == 1 else packed(self.runs_per_gpu)
        task = ray.remote(**options)(function)
        waiting = list(jobs)
        in_flight: dict[Any, Job] = {}
        outcomes: dict[str, Outcome] = {}
        limit = self.max_parallel or len(jobs)
        while waiting or in_flight:
            while waiting and len(in_flight) < limit:
                job = waiting.pop(0)
                in_flight[task.remote(job)] = job
            done, _ = ray.wait(list(in_flight), num_returns=1)
            for ref in done:
                job = in_flight.pop(ref)
                outcomes[job.run_id] = _outcome(job, ref)
        return [outcomes[job.run_id] for job in jobs]


def task_options(
    gpus_per_run: float | None, runs_per_gpu: int, cluster_gpus: float
) -> dict[str, Any]:
    """``ray.remote``'s options of a run: a CPU, its share of a GPU, no retries by Ray."""
    if runs_per_gpu > 1:
        if cluster_gpus == 0:
            raise ValueError(f"--runs-per-gpu {runs_per_gpu}: the Ray cluster has no GPU")
        gpus: float = 1 / runs_per_gpu
    elif gpus_per_run is None:
        gpus = 1 if cluster_gpus > 0 else 0
    else:
        gpus = gpus_per_run
    return {"num_cpus": 1, "num_gpus": gpus, "max_retries": 0}


def packed(runs_per_gpu: int) -> Callable[[Job], Outcome]:
    """`execute`, after checking on the task's GPU that `runs_per_gpu` runs like it fit."""

    def execute_packed(job: Job) -> Outcome:
        refuse_unfit([job.run_config()], runs_per_gpu, gpu_memory())
        return execute(job)

    return execute_packed


def _outcome(job: Job, ref: Any) -> Outcome:
    try:
        outcome: Outcome = ray.get(ref)
    except RayTaskError as error:  # `execute` raised: the job itself is broken
        return Outcome(job.run_id, RunState.FAILED, _short(error), recorded=False)
    except RayError as error:  # the worker died: killed, out of memory, node lost
        return Outcome(job.run_id, RunState.INTERRUPTED, _short(error), recorded=False)
    return outcome


def _short(error: BaseException, lines: int = 3) -> str:
    text = f"{type(error).__name__}: {error}"
    return " ".join(text.strip().splitlines()[:lines])
