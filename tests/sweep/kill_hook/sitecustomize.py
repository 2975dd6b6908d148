"""Test hook: the sweep worker of one run SIGKILLs itself once that run finished a step.

Python imports ``sitecustomize`` from its path at start-up. The sweep tests put this
directory on the ``PYTHONPATH`` of a sweep's workers, with
``XLCL_TEST_KILL_AFTER_STEP=<run_id>:<step>`` (`tests/sweep/conftest.py`). Every backend
runs a job through ``xlcl.sweep.worker.execute`` in a process of its own (the local pool's
``python -m xlcl.sweep``, a submitit task, a Ray worker); here it is wrapped so that, for
that run, the process kills itself with SIGKILL (no handler runs, as when a node dies) when
a step after `step` is about to start: step `step` has its scores and checkpoint on disk.
"""

from __future__ import annotations

import os
import signal

KILL_VARIABLE = "XLCL_TEST_KILL_AFTER_STEP"


def _kill_after_step(run_id: str, step: int) -> None:
    import xlcl.sweep.worker as worker
    from xlcl.progress import ConsoleReporter  # what the worker reports a run's steps to

    execute = worker.execute

    def execute_or_die(job, job_id=None):
        if job.run_id != run_id:
            return execute(job, job_id)
        start_step = ConsoleReporter.start_step

        def start_step_or_die(self, number, total, locale):
            if number > step:
                os.kill(os.getpid(), signal.SIGKILL)
            start_step(self, number, total, locale)

        ConsoleReporter.start_step = start_step_or_die
        try:
            return execute(job, job_id)
        finally:
            ConsoleReporter.start_step = start_step

    worker.execute = execute_or_die


if os.environ.get(KILL_VARIABLE):
    _run_id, _, _step = os.environ[KILL_VARIABLE].rpartition(":")
    _kill_after_step(_run_id, int(_step))
