"""One run of a sweep (or one group of runs), in the process a backend gives it: lock,
heartbeat, run, record.

Every backend ends up here: the local pool starts ``python -m xlcl.sweep JOB_JSON``,
Slurm (submitit) and Ray call `execute` in their own worker processes. The run itself is
`xlcl.protocol.run`, which resumes an unfinished run directory from its last finished step;
a group (``--group-lora``) is `xlcl.schedules.grouped.run_group`, which does so for each.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Sequence
from contextlib import ExitStack
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
    """Runs for a backend to execute: a run's resolved config and who executes it, and the
    other runs trained with it as one group (`xlcl.schedules.grouped`), if any."""

    run_id: str
    config: dict[str, Any]
    backend: str
    group: tuple[dict[str, Any], ...] = ()  # the configs of the group's other runs

    @classmethod
    def of(cls, config: RunConfig, backend: str) -> Job:
        """The job of running `config` on `backend`."""
        return cls(config.run_id, config.model_dump(mode="json"), backend)

    @classmethod
    def of_group(cls, configs: Sequence[RunConfig], backend: str) -> Job:
        """The job of running `configs` as one group (one run: alone), named by the first."""
        lead, *others = configs
        group = tuple(config.model_dump(mode="json") for config in others)
        return cls(lead.run_id, lead.model_dump(mode="json"), backend, group)

    def run_config(self) -> RunConfig:
        """The config, validated again on the executing side."""
        return self.run_configs()[0]

    def run_configs(self) -> list[RunConfig]:
        """The configs of every run of the job, the first run's first."""
        configs = []
        for raw in (self.config, *self.group):
            config = validate_config(raw, where=f"job {self.run_id}")
            configs.append(config)
        if configs[0].run_id != self.run_id:
            raise ValueError(f"job {self.run_id}: its config hashes to {configs[0].run_id}")
        return configs

    @property
    def run_dir(self) -> Path:
        """``RESULTS/<run_id>`` of the first run (a group's log goes there)."""
        return Path(self.config["output_dir"]) / self.run_id


@dataclass(frozen=True)
class Outcome:
    """How an attempt ended. `recorded`: the executing process wrote it to the run's state."""

    run_id: str
    state: RunState  # DONE, FAILED, INTERRUPTED, or RUNNING (another process has the run)
    error: str | None = None
    recorded: bool = True


def execute(job: Job, job_id: str | None = None) -> Outcome:
    """Run `job` here, recording the attempt in each of its runs; exceptions of the runs
    become a FAILED outcome. A group's finished runs are skipped, the rest train together."""
    configs = [config for config in job.run_configs() if not is_complete(_directory(config))]
    if not configs:
        return Outcome(job.run_id, RunState.DONE)
    try:
        with ExitStack() as locks:
            for config in configs:
                locks.enter_context(run_lock(_directory(config)))
            return _attempt(job, configs, job_id)
    except AlreadyRunning as error:
        return Outcome(job.run_id, RunState.RUNNING, str(error))


def _directory(config: RunConfig) -> Path:
    return Path(config.output_dir) / config.run_id


def _attempt(job: Job, configs: Sequence[RunConfig], job_id: str | None) -> Outcome:
    directories = [_directory(config) for config in configs]
    for directory in directories:
        begin_attempt(directory, job.backend, job_id)
    from transformers.utils import logging as transformers_logging

    # torch is imported only where a run executes
    from xlcl.protocol import run
    from xlcl.schedules.grouped import run_group

    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()

    def end(state: RunState, message: str | None) -> None:
        for directory in directories:  # a group's runs that finished are done all the same
            done = state is not RunState.DONE and is_complete(directory)
            end_attempt(
                directory, RunState.DONE if done else state, None if done else message, job.backend
            )

    with ExitStack() as heartbeats:
        for directory in directories:
            heartbeats.enter_context(Heartbeat(directory))
        try:
            if job.group:
                run_group(configs, ConsoleReporter())
            else:
                run(configs[0], ConsoleReporter())
        except Exception as error:
            message = f"{type(error).__name__}: {error}"
            end(RunState.FAILED, message)
            return Outcome(job.run_id, RunState.FAILED, message)
        except BaseException as error:  # SIGTERM (as SystemExit), Ctrl-C
            end(RunState.INTERRUPTED, f"{type(error).__name__}: {error}")
            raise
    end(RunState.DONE, None)
    return Outcome(job.run_id, RunState.DONE)


def job_to_json(job: Job) -> str:
    """The job as one line of JSON (the local backend's command-line argument)."""
    return json.dumps(asdict(job), separators=(",", ":"))


def job_from_json(text: str) -> Job:
    """The inverse of `job_to_json`."""
    fields = json.loads(text)
    return Job(**{**fields, "group": tuple(fields.get("group", ()))})


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
