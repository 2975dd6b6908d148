"""What a sweep knows about each of its runs, on disk beside the run's own files.

In ``RESULTS/<run_id>/``, next to what the protocol writes (``docs/run-directory.md``):

- ``sweep-state.json``: the run's sweep state and every attempt (backend, host, pid, job
  id, start, end, outcome, error);
- ``heartbeat.json``: host, pid and time, rewritten every `HEARTBEAT_SECONDS` while an
  attempt runs, so that a run that is really running can be told from one that was killed;
- ``.lock``: held (``flock``) by the process running the run, so two never run it at once.

A run is *queued* (nothing ran yet), *running* (a fresh heartbeat from a live process),
*done* (``DONE`` marker), *failed* (the run raised) or *interrupted* (killed: the process
is gone or its heartbeat is stale). Failed and interrupted runs are retried by the next
``xlcl sweep``; an interrupted run resumes from its last finished step.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from xlcl.atomic import atomic_write_bytes
from xlcl.store import MANIFEST, SCORES, is_complete

STATE = "sweep-state.json"
HEARTBEAT = "heartbeat.json"
LOCK = ".lock"
SWEEP_FILE = "sweep.json"
HEARTBEAT_SECONDS = 10.0
STALE_SECONDS = 60.0


class RunState(StrEnum):
    """Where a run of a sweep stands."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    INTERRUPTED = "interrupted"


class AlreadyRunning(RuntimeError):
    """Another process holds the run's lock."""


def now() -> datetime:
    """The current time, timezone-aware (UTC)."""
    return datetime.now(UTC)


def _stamp(moment: datetime | None = None) -> str:
    return (moment or now()).isoformat(timespec="seconds")


class RunFileError(ValueError):
    """A file of a run directory that exists but cannot be read (damaged from outside)."""


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in `path`, or None where there is no such file."""
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:  # JSON and UTF-8 decoding errors are ValueErrors
        raise RunFileError(f"{path}: cannot be read as JSON ({error})") from None
    return loaded if isinstance(loaded, dict) else None


def write_json(path: Path, content: dict[str, Any]) -> None:
    """Replace `path` atomically with `content` as JSON."""
    atomic_write_bytes(path, (json.dumps(content, indent=2) + "\n").encode())


def read_state(run_dir: Path) -> dict[str, Any]:
    """The run's sweep state (``queued`` with no attempts where none was recorded)."""
    state = read_json(run_dir / STATE)
    if state is None:
        state = {"run_id": run_dir.name, "state": RunState.QUEUED.value, "attempts": []}
    return state


def mark_queued(run_dir: Path) -> None:
    """Record that the run waits for a backend (its attempts so far are kept)."""
    state = read_state(run_dir)
    state.update(state=RunState.QUEUED.value, error=None)
    write_json(run_dir / STATE, state)


def begin_attempt(run_dir: Path, backend: str, job_id: str | None) -> int:
    """Record that this process starts an attempt at the run; return its number (from 1)."""
    state = read_state(run_dir)
    attempts = state["attempts"]
    if attempts and attempts[-1]["ended_at"] is None:  # its process died without a word
        attempts[-1].update(
            ended_at=_stamp(),
            outcome=RunState.INTERRUPTED.value,
            error="the process ended without recording an outcome (killed or requeued)",
        )
    number = len(attempts) + 1
    attempts.append(
        {
            "attempt": number,
            "backend": backend,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "job_id": job_id,
            "started_at": _stamp(),
            "ended_at": None,
            "outcome": None,
            "error": None,
        }
    )
    state.update(state=RunState.RUNNING.value, error=None)
    write_json(run_dir / STATE, state)
    return number


def end_attempt(run_dir: Path, outcome: RunState, error: str | None, backend: str) -> None:
    """Close the open attempt with `outcome`; record one if the run died before opening it."""
    state = read_state(run_dir)
    attempts = state["attempts"]
    if not attempts or attempts[-1]["ended_at"] is not None:
        attempts.append(
            {"attempt": len(attempts) + 1, "backend": backend, "started_at": None, "job_id": None}
        )
    attempts[-1].update(ended_at=_stamp(), outcome=outcome.value, error=error)
    state.update(state=outcome.value, error=error)
    write_json(run_dir / STATE, state)


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold the run's lock, or raise `AlreadyRunning` at once if another process has it."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / LOCK, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise AlreadyRunning(f"{run_dir.name} is being run by another process") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class Heartbeat:
    """Rewrites ``heartbeat.json`` every `interval` seconds from a daemon thread."""

    def __init__(self, run_dir: Path, interval: float = HEARTBEAT_SECONDS) -> None:
        self.path = run_dir / HEARTBEAT
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="xlcl-heartbeat", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._write()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            self._write()

    def _write(self) -> None:
        write_json(self.path, {"host": socket.gethostname(), "pid": os.getpid(), "at": _stamp()})


@dataclass(frozen=True)
class RunStatus:
    """One run of a sweep as ``xlcl sweep status`` shows it."""

    run_id: str
    state: RunState
    steps_done: int | None  # the last step with scores; None before step 0 is scored
    steps_total: int | None
    attempts: int
    error: str | None
    where: str | None  # host:pid of the last attempt
    heartbeat_age: float | None  # seconds since the last heartbeat
    # Wall time of its attempts (a running one's up to now), and of those cut off or failed.
    seconds: float = 0.0
    seconds_cut: float = 0.0


def run_status(
    run_dir: Path, steps_total: int | None, stale_after: float = STALE_SECONDS
) -> RunStatus:
    """The state of the run in `run_dir`, telling running from killed by its heartbeat."""
    state = read_state(run_dir)
    manifest = read_json(run_dir / MANIFEST) or {}
    recorded = RunState(state["state"])
    in_sweep = (run_dir / STATE).exists()
    if not in_sweep and manifest.get("status") in _MANIFEST_STATES:
        recorded = _MANIFEST_STATES[manifest["status"]]  # a run started by `xlcl run`
    last = state["attempts"][-1] if state["attempts"] else {}
    where = f"{last['host']}:{last['pid']}" if last.get("host") else None
    beat = read_json(run_dir / HEARTBEAT)
    age = None
    if beat is not None:
        age = (now() - datetime.fromisoformat(beat["at"])).total_seconds()
    error = state.get("error") or manifest.get("error")
    if is_complete(run_dir):
        resolved, error = RunState.DONE, None
    elif recorded is RunState.RUNNING:
        alive = _alive(beat) and age is not None and age <= stale_after
        resolved = RunState.RUNNING if alive else RunState.INTERRUPTED
        if not alive:
            error = _why_interrupted(beat, age)
    else:
        resolved = recorded
    # An attempt left open runs until now if the run is running, else it was killed: it
    # ran until its last heartbeat, and counts as cut off.
    alive = resolved is RunState.RUNNING
    open_until = now() if alive else (datetime.fromisoformat(beat["at"]) if beat else None)
    seconds = [_attempt_seconds(attempt, open_until) for attempt in state["attempts"]]
    cut = (RunState.INTERRUPTED.value, RunState.FAILED.value)
    return RunStatus(
        run_id=run_dir.name,
        state=resolved,
        steps_done=_steps_done(run_dir),
        steps_total=steps_total,
        attempts=len(state["attempts"]),
        error=error if resolved in (RunState.FAILED, RunState.INTERRUPTED) else None,
        where=where,
        heartbeat_age=age,
        seconds=sum(seconds),
        seconds_cut=sum(
            took
            for took, attempt in zip(seconds, state["attempts"], strict=True)
            if attempt.get("outcome") in cut or (not alive and not attempt.get("ended_at"))
        ),
    )


def _attempt_seconds(attempt: dict[str, Any], open_until: datetime | None) -> float:
    """How long an attempt took: start to end, an open one's start to `open_until`; 0 where
    its start was never recorded (the process died before it could) or nothing tells."""
    ended = attempt.get("ended_at")
    if not attempt.get("started_at") or (not ended and open_until is None):
        return 0.0
    started = datetime.fromisoformat(attempt["started_at"])
    until = datetime.fromisoformat(ended) if ended else open_until
    assert until is not None
    return max((until - started).total_seconds(), 0.0)


# How a run with no sweep state (`xlcl run` outside a sweep) ended, from its manifest. A
# manifest's "running" stays queued: without a heartbeat it cannot be told from a run
# killed by SIGKILL, and a sweep must not leave such a run alone forever.
_MANIFEST_STATES = {"failed": RunState.FAILED, "interrupted": RunState.INTERRUPTED}


def _alive(beat: dict[str, Any] | None) -> bool:
    """False where the heartbeat's process ran on this host and is gone."""
    if beat is None:
        return False
    if beat.get("host") != socket.gethostname():
        return True  # another machine: only the heartbeat's age can tell
    try:
        os.kill(int(beat["pid"]), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _why_interrupted(beat: dict[str, Any] | None, age: float | None) -> str:
    if beat is None or age is None:
        return "no heartbeat: the run was killed before it started"
    if beat.get("host") == socket.gethostname() and not _alive(beat):
        return f"process {beat['pid']} is gone (killed); last heartbeat {age:.0f} s ago"
    return f"heartbeat stale for {age:.0f} s (host {beat.get('host')}, pid {beat.get('pid')})"


def _steps_done(run_dir: Path) -> int | None:
    path = run_dir / SCORES
    if not path.exists():
        return None
    try:
        steps = pq.read_table(path, columns=["step"]).column("step").to_pylist()
    except (OSError, ValueError) as error:  # pyarrow's ArrowInvalid is a ValueError
        raise RunFileError(f"{path}: cannot be read as a scores table ({error})") from None
    return max(steps) if steps else None
