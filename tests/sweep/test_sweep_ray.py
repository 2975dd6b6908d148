"""Ray: a head started on loopback (memory capped) by the test, the sweep as a Ray client.

Ray replaces a loopback ``--node-ip-address`` by the machine's address
(``ray._private.services.resolve_ip_for_localhost``); the sweep connects to
``127.0.0.1:PORT`` all the same. The head's processes are ended by pid at the end.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")
psutil = pytest.importorskip("psutil")

from xlcl.sweep.backends.ray import RayBackend  # noqa: E402

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def ray_head():
    """``ray start --head`` on loopback with 2 CPUs and a 80 MB object store; its address."""
    temp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))  # short: socket paths are limited
    port = _free_port()
    ray_cli = Path(sys.executable).parent / "ray"
    subprocess.run(
        [
            str(ray_cli), "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}",
            "--num-cpus=2", "--num-gpus=0", "--object-store-memory=80000000",
            "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp}",
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )  # fmt: skip
    try:
        yield f"127.0.0.1:{port}"
    finally:
        _stop_head(temp)
        shutil.rmtree(temp, ignore_errors=True)


def _stop_head(temp: Path) -> None:
    """End the head's processes (found by its temp dir) and their children, by pid."""
    roots = [
        p
        for p in psutil.process_iter(["cmdline"])
        if str(temp) in " ".join(p.info["cmdline"] or [])
    ]
    processes = {p.pid: p for root in roots for p in [root, *root.children(recursive=True)]}
    for process in processes.values():
        with contextlib.suppress(psutil.NoSuchProcess):
            process.terminate()
    _, alive = psutil.wait_procs(list(processes.values()), timeout=3)
    for process in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()


def test_ray_tasks_fail_kill_and_resume_against_a_cluster_address(run_scenario, ray_head):
    def make(results, environment):
        # The cluster starts the workers, not this process: they get the environment the
        # scenario needs (the kill hook) through the job's runtime_env.
        options = {"runtime_env": {"env_vars": environment}} if environment else {}
        return RayBackend(ray_head, max_parallel=2, init_options=options)

    scenario = run_scenario(make, "ray")
    scenario.check_first_round()
    scenario.check_second_round()
    assert not ray.is_initialized()  # the backend closed the session it opened
