"""The CUDA MPS daemon that lets several runs share a GPU's compute instead of time-slicing it.

```python
with mps_daemon(results / ".mps") as daemon:  # None, after a warning, where MPS is missing
    env = {**os.environ, **(daemon.environment if daemon else {})}
```

The daemon is this sweep's own: its pipe directory is private, so it neither joins nor stops
a daemon someone else runs. It is stopped (``echo quit | nvidia-cuda-mps-control``) when the
block ends, however it ends. MPS renumbers the devices the daemon sees from 0, so a worker
names its GPU by its position (`client_device`), not by the ``CUDA_VISIBLE_DEVICES`` entry.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

CONTROL = "nvidia-cuda-mps-control"
PIPE_VARIABLE = "CUDA_MPS_PIPE_DIRECTORY"
LOG_VARIABLE = "CUDA_MPS_LOG_DIRECTORY"

# Runs a command with extra environment variables and standard input; returns how it ended.
CommandRunner = Callable[
    [Sequence[str], Mapping[str, str], str], "subprocess.CompletedProcess[str]"
]


def run_command(
    command: Sequence[str], environment: Mapping[str, str], stdin: str
) -> subprocess.CompletedProcess[str]:
    """Run `command` with `environment` added to ours, `stdin` as its input."""
    return subprocess.run(
        list(command),
        input=stdin,
        env={**os.environ, **environment},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@dataclass(frozen=True)
class MpsDaemon:
    """A running daemon: `environment` connects a worker to it."""

    environment: dict[str, str]


def client_device(position: int) -> str:
    """The ``CUDA_VISIBLE_DEVICES`` of a worker on the daemon's `position`-th visible GPU."""
    return str(position)


@contextlib.contextmanager
def mps_daemon(
    log_directory: Path,
    runner: CommandRunner = run_command,
) -> Iterator[MpsDaemon | None]:
    """A daemon of its own for the block, or None with a one-line warning where it cannot start.

    Its logs go to `log_directory`; its pipes to a new directory under the system's temporary
    one, as Unix socket paths are limited to about 100 bytes and a results path may be longer.
    """
    if shutil.which(CONTROL) is None:
        warnings.warn(
            f"{CONTROL} not found: the runs on each GPU time-slice it, without MPS",
            stacklevel=3,
        )
        yield None
        return
    log_directory.mkdir(parents=True, exist_ok=True)
    pipes = Path(tempfile.mkdtemp(prefix="xlcl-mps-"))
    environment = {PIPE_VARIABLE: str(pipes), LOG_VARIABLE: str(log_directory)}
    started = runner([CONTROL, "-d"], environment, "")
    if started.returncode != 0:
        shutil.rmtree(pipes, ignore_errors=True)
        reason = (started.stderr or started.stdout).strip().replace("\n", " ")
        warnings.warn(
            f"{CONTROL} -d failed ({reason or f'exit code {started.returncode}'}): "
            "the runs on each GPU time-slice it, without MPS",
            stacklevel=3,
        )
        yield None
        return
    try:
        yield MpsDaemon(environment)
    finally:
        runner([CONTROL], environment, "quit\n")
        shutil.rmtree(pipes, ignore_errors=True)
