"""Where the runs of a sweep execute: local processes, Slurm (submitit) or Ray.

A backend takes jobs and returns, once every one of them has ended, how each ended. It
never retries: the sweep driver decides what runs again. The backends import their heavy
dependencies (submitit, ray) only when built.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from xlcl.sweep.worker import Job, Outcome


class Backend(Protocol):
    """Runs jobs to their end, each in a process of its own, and reports their outcomes."""

    name: str

    def run(self, jobs: Sequence[Job]) -> list[Outcome]:
        """Execute `jobs`; return their outcomes in the same order."""
        ...


BACKENDS = ("local", "slurm", "ray")
MPS_LOGS = ".mps"  # RESULTS/.mps/: the logs of the MPS daemon that packed runs share


def make_backend(
    name: str,
    results: Path,
    max_parallel: int | None = None,
    gpus_per_run: int | None = None,
    ray_address: str | None = None,
    slurm_cluster: str = "slurm",
    slurm_timeout_min: int = 24 * 60,
    slurm_parameters: dict[str, Any] | None = None,
    runs_per_gpu: int = 1,
) -> Backend:
    """The backend `name` (``local``, ``slurm`` or ``ray``) with the options that apply to it.

    `gpus_per_run` applies to Slurm (default 1) and Ray (default: 1 where the cluster has
    GPUs, else 0); the local pool always gives each run one GPU where there are GPUs.
    `runs_per_gpu` runs share each GPU: local processes, K to a Slurm job, or 1/K of a GPU
    per Ray task (docs/sweeps.md, "Several runs per GPU").
    """
    if runs_per_gpu < 1:
        raise ValueError(f"--runs-per-gpu must be at least 1, got {runs_per_gpu}")
    if name == "local":
        from xlcl.sweep.backends.local import LocalBackend

        return LocalBackend(
            max_parallel=max_parallel, runs_per_gpu=runs_per_gpu, mps_logs=results / MPS_LOGS
        )
    if name == "slurm":
        from xlcl.sweep.backends.slurm import SlurmBackend

        return SlurmBackend(
            results,
            cluster=slurm_cluster,
            max_parallel=max_parallel,
            gpus_per_run=1 if gpus_per_run is None else gpus_per_run,
            timeout_min=slurm_timeout_min,
            parameters=slurm_parameters,
            runs_per_gpu=runs_per_gpu,
        )
    if name == "ray":
        from xlcl.sweep.backends.ray import RayBackend

        return RayBackend(
            ray_address,
            max_parallel=max_parallel,
            gpus_per_run=gpus_per_run,
            runs_per_gpu=runs_per_gpu,
        )
    close = difflib.get_close_matches(name, BACKENDS, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ValueError(f"unknown backend {name!r}{hint} (known: {', '.join(BACKENDS)})")
