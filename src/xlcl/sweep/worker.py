"""One run of a sweep, in the process a backend gives it: lock, heartbeat, run, record.

Every backend ends up here: the local pool starts ``python -m xlcl.sweep JOB_JSON``,
Slurm (submitit) and Ray call `execute` in their own worker processes. The run itself is
`xlcl.protocol.run`, which resumes an unfinished run directory from its last finished step.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from xlcl.config import RunConfig, validate_config
from xlcl.progress import ConsoleReporter
from xlcl.store import is_complete
from xlcl.sweep.state import (
    AlreadyRunning,
    Heartbeat,
    RunState,
    begin_attempt,
    end_attempt,
    run_lock,
)

# Exit codes of ``python -m xlcl.sweep``: done 0, failed 1, running elsewhere 3.
EXIT_FAILED = 1
EXIT_ELSEWHERE = 3


@dataclass(frozen=True)
class Job:
    """A run for a backend to execute: its resolved config and who executes it."""

    run_id: str
    config: dict[str, Any]
    backend: str

    @classmethod
    def of(cls, config: RunConfig, backend: str) -> Job:
        """The job of running `config` on `backend`."""
        return cls(config.run_id, config.model_dump(mode="json"), backend)

    def run_config(self) -> RunConfig:
        """The config, validated again on the executing side."""
        config = validate_config(self.config, where=f"job {self.run_id}")
        if config.run_id != self.run_id:
            raise ValueError(f"job {self.run_id}: its config hashes to {config.run_id}")
        return config

    @property
    def run_dir(self) -> Path:
        """``RESULTS/<run_id>``."""
        return Path(self.config["output_dir"]) / self.run_id


@dataclass(frozen=True)
class Outcome:
    """How an attempt ended. `recorded`: the executing process wrote it to the run's state."""

    run_id: str
    state: RunState  # DONE, FAILED, INTERRUPTED, or RUNNING (another process has the run)
    error: str | None = None
    recorded: bool = True


def execute(job: Job, job_id: str | None = None) -> Outcome:
    """Run `job` here, recording the attempt; exceptions of the run become a FAILED outcome."""
    config = job.run_config()
    if is_complete(job.run_dir):
        return Outcome(job.run_id, RunState.DONE)
    try:
        with run_lock(job.run_dir):
            return _attempt(job, config, job_id)
    except AlreadyRunning as error:
        return Outcome(job.run_id, RunState.RUNNING, str(error))


def _attempt(job: Job, config: RunConfig, job_id: str | None) -> Outcome:
    begin_attempt(job.run_dir, job.backend, job_id)
    from transformers.utils import logging as transformers_logging

    from xlcl.protocol import run  # torch is imported only where a run executes

    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()
    with Heartbeat(job.run_dir):
        try:
            run(config, ConsoleReporter())
        except Exception as error:
            message = f"{type(error).__name__}: {error}"
            end_attempt(job.run_dir, RunState.FAILED, message, job.backend)
            return Outcome(job.run_id, RunState.FAILED, message)
        except BaseException as error:  # SIGTERM (as SystemExit), Ctrl-C
            message = f"{type(error).__name__}: {error}"
            end_attempt(job.run_dir, RunState.INTERRUPTED, message, job.backend)
            raise
    end_attempt(job.run_dir, RunState.DONE, None, job.backend)
    return Outcome(job.run_id, RunState.DONE)


def job_to_json(job: Job) -> str:
    """The job as one line of JSON (the local backend's command-line argument)."""
    return json.dumps(asdict(job), separators=(",", ":"))


def job_from_json(text: str) -> Job:
    """The inverse of `job_to_json`."""
    return Job(**json.loads(text))


def main(argv: list[str] | None = None) -> int:
    """``python -m xlcl.sweep JOB_JSON``: run one job; the exit code says how it ended."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m xlcl.sweep JOB_JSON", file=sys.stderr)
        return 2

    def terminate(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)  # the protocol marks the run interrupted

    signal.signal(signal.SIGTERM, terminate)
    outcome = execute(job_from_json(args[0]), job_id=str(os.getpid()))
    if outcome.state is RunState.DONE:
        return 0
    if outcome.state is RunState.RUNNING:
        print(outcome.error, file=sys.stderr)
        return EXIT_ELSEWHERE
    print(f"run {outcome.run_id} failed: {outcome.error}", file=sys.stderr)
    return EXIT_FAILED
