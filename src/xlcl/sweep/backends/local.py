"""A pool of local processes: `runs_per_gpu` runs per GPU, or N runs at a time on the CPU.

Each run is a subprocess (``python -m xlcl.sweep JOB_JSON``) with its output in
``RESULTS/<run_id>/logs/attempt-N.log``, so a run that crashes or is killed takes nothing
else down. With GPUs, each worker sees one (``CUDA_VISIBLE_DEVICES``): worker slot s uses GPU
s mod GPUs, so each GPU has at most `runs_per_gpu` runs; with more than one, the pool runs a
CUDA MPS daemon of its own while it works (`xlcl.sweep.mps`). On the CPU, the cores are split
between the parallel runs (``OMP_NUM_THREADS``, unless already set).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from xlcl.sweep.mps import CommandRunner, MpsDaemon, client_device, mps_daemon, run_command
from xlcl.sweep.state import RunState, read_state
from xlcl.sweep.worker import EXIT_ELSEWHERE, Job, Outcome, job_to_json

LOGS = "logs"


@dataclass
class _Running:
    job: Job
    process: subprocess.Popen[bytes]
    slot: int
    attempt: int  # the number the worker's attempt will have in the run's state
    log: IO[bytes]
    log_path: Path


class LocalBackend:
    """Runs jobs as subprocesses of this machine, `max_parallel` at a time (by default
    `runs_per_gpu` per visible GPU, or one on the CPU)."""

    name = "local"

    def __init__(
        self,
        max_parallel: int | None = None,
        gpus: Sequence[str] | None = None,
        poll_seconds: float = 0.2,
        runs_per_gpu: int = 1,
        mps_logs: Path | None = None,
        mps_runner: CommandRunner = run_command,
    ) -> None:
        self.gpus = list(visible_gpus() if gpus is None else gpus)
        if runs_per_gpu > 1 and not self.gpus:
            raise ValueError(f"--runs-per-gpu {runs_per_gpu}: no GPU is visible here")
        self.runs_per_gpu = runs_per_gpu
        slots = len(self.gpus) * runs_per_gpu
        if self.gpus and max_parallel is not None and max_parallel > slots:
            raise ValueError(
                f"--max-parallel {max_parallel}: {len(self.gpus)} visible GPU(s) at "
                f"{runs_per_gpu} run(s) each (--runs-per-gpu) run {slots} at a time"
            )
        self.max_parallel = max_parallel or slots or 1
        if self.max_parallel < 1:
            raise ValueError(f"--max-parallel must be at least 1, got {self.max_parallel}")
        self.poll_seconds = poll_seconds
        self.mps_logs = mps_logs or Path(tempfile.gettempdir()) / "xlcl-mps-logs"
        self.mps_runner = mps_runner

    def run(self, jobs: Sequence[Job]) -> list[Outcome]:
        """Run `jobs`, at most `max_parallel` at a time; wait for all of them."""
        with self._gpu_sharing() as daemon:
            return self._run(jobs, daemon)

    def _gpu_sharing(self) -> contextlib.AbstractContextManager[MpsDaemon | None]:
        if self.runs_per_gpu == 1:
            return contextlib.nullcontext()
        return mps_daemon(self.mps_logs, runner=self.mps_runner)

    def _run(self, jobs: Sequence[Job], daemon: MpsDaemon | None) -> list[Outcome]:
        queue = deque(jobs)
        free = list(range(self.max_parallel))
        running: list[_Running] = []
        outcomes: dict[str, Outcome] = {}
        try:
            while queue or running:
                while queue and free:
                    running.append(self._start(queue.popleft(), free.pop(0), daemon))
                for item in [item for item in running if item.process.poll() is not None]:
                    running.remove(item)
                    item.log.close()
                    free.append(item.slot)
                    outcomes[item.job.run_id] = _outcome(item)
                time.sleep(self.poll_seconds if running else 0)
        finally:
            for item in running:  # interrupted ourselves: stop the runs, they can resume
                item.process.send_signal(signal.SIGTERM)
            for item in running:
                item.process.wait()
                item.log.close()
        return [outcomes[job.run_id] for job in jobs]

    def _start(self, job: Job, slot: int, daemon: MpsDaemon | None) -> _Running:
        attempt = len(read_state(job.run_dir)["attempts"]) + 1
        log_path = job.run_dir / LOGS / f"attempt-{attempt}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(log_path, "ab")  # noqa: SIM115 (closed when the process ends)
        process = subprocess.Popen(
            [sys.executable, "-m", "xlcl.sweep", job_to_json(job)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=self.environment(slot, daemon),
        )
        return _Running(job, process, slot, attempt, log, log_path)

    def environment(self, slot: int, daemon: MpsDaemon | None = None) -> dict[str, str]:
        """The environment of the worker in `slot`, connected to `daemon` where given."""
        env = dict(os.environ)
        if self.gpus:
            # Round robin: below runs_per_gpu x GPUs runs at a time, the GPUs share the load.
            position = slot % len(self.gpus)
            if daemon is None:
                env["CUDA_VISIBLE_DEVICES"] = self.gpus[position]
            else:
                env.update(daemon.environment)
                env["CUDA_VISIBLE_DEVICES"] = client_device(position)
        elif "OMP_NUM_THREADS" not in env:
            env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // self.max_parallel))
        return env


def _outcome(item: _Running) -> Outcome:
    code = item.process.returncode
    run_id = item.job.run_id
    if code == 0:
        return Outcome(run_id, RunState.DONE)
    if code == EXIT_ELSEWHERE:
        return Outcome(run_id, RunState.RUNNING, "another process is running it")
    attempts = read_state(item.job.run_dir)["attempts"]
    attempt = attempts[item.attempt - 1] if len(attempts) >= item.attempt else {}
    if code < 0:
        name = signal.Signals(-code).name
        return Outcome(run_id, RunState.INTERRUPTED, f"killed by {name}", recorded=False)
    if attempt.get("ended_at") is not None and attempt.get("outcome") is not None:
        return Outcome(run_id, RunState(attempt["outcome"]), attempt.get("error"))
    return Outcome(
        run_id,
        RunState.FAILED,
        f"worker exited with code {code}: {_tail(item.log_path)}",
        recorded=False,
    )


def _tail(path: Path, lines: int = 3) -> str:
    text = path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    return " | ".join(text[-lines:]) if text else "(no output)"


def visible_gpus() -> list[str]:
    """The GPUs this process may use: ``CUDA_VISIBLE_DEVICES`` if set, else all CUDA devices."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [device for device in listed.split(",") if device.strip()]
    import torch

    return [str(index) for index in range(torch.cuda.device_count())]
