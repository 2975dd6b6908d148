"""`--runs-per-gpu K`: slots on GPUs, the MPS daemon, the memory check, Slurm chunks, Ray
shares, and concurrent runs scoring exactly as sequential ones.

The GPU facts (visible GPUs, their memory, ``nvidia-cuda-mps-control``) are injected: these
tests run on the CPU.
"""

from __future__ import annotations

import subprocess

import pandas as pd
import pytest
import typer
import yaml
from typer.testing import CliRunner

from xlcl.cli import sweep as sweep_cli
from xlcl.sweep import RunState, expand, load_sweep, run_sweep
from xlcl.sweep.backends import make_backend, packing
from xlcl.sweep.backends.local import LocalBackend
from xlcl.sweep.backends.packing import GIB, refuse_unfit
from xlcl.sweep.mps import CONTROL, LOG_VARIABLE, PIPE_VARIABLE, MpsDaemon, mps_daemon
from xlcl.sweep.worker import Job

XLMR = "FacebookAI/xlm-roberta-base"


class FakeControl:
    """Answers ``nvidia-cuda-mps-control`` calls with `returncode` and records them."""

    def __init__(self, returncode: int = 0, stderr: str = "") -> None:
        self.returncode = returncode
        self.stderr = stderr
        self.calls: list[tuple[list[str], dict[str, str], str]] = []

    def __call__(self, command, environment, stdin):
        self.calls.append((list(command), dict(environment), stdin))
        return subprocess.CompletedProcess(command, self.returncode, "", self.stderr)

    @property
    def commands(self) -> list[tuple[list[str], str]]:
        return [(command, stdin) for command, _, stdin in self.calls]


STARTED_AND_STOPPED = [([CONTROL, "-d"], ""), ([CONTROL], "quit\n")]


@pytest.fixture
def mps_found(monkeypatch):
    monkeypatch.setattr("xlcl.sweep.mps.shutil.which", lambda name: f"/usr/bin/{name}")


def broken_job(tmp_path, name: str = "broken") -> Job:
    """A job whose worker exits at once with code 1: its config is not a run config."""
    return Job(name, {"output_dir": str(tmp_path / "results")}, "local")


# Slots and environments


def test_k_workers_share_each_gpu_round_robin():
    backend = LocalBackend(gpus=["3", "5"], runs_per_gpu=2)
    assert backend.max_parallel == 4
    devices = [backend.environment(slot)["CUDA_VISIBLE_DEVICES"] for slot in range(4)]
    assert devices == ["3", "5", "3", "5"]


def test_under_mps_workers_name_their_gpu_by_its_position_and_get_the_daemon_dirs():
    backend = LocalBackend(gpus=["3", "5"], runs_per_gpu=2)
    daemon = MpsDaemon({PIPE_VARIABLE: "/tmp/pipes", LOG_VARIABLE: "/r/.mps"})
    environments = [backend.environment(slot, daemon) for slot in range(4)]
    # The daemon renumbers the GPUs it sees from 0 (NVIDIA's MPS docs, CUDA_VISIBLE_DEVICES).
    assert [env["CUDA_VISIBLE_DEVICES"] for env in environments] == ["0", "1", "0", "1"]
    assert {env[PIPE_VARIABLE] for env in environments} == {"/tmp/pipes"}
    assert {env[LOG_VARIABLE] for env in environments} == {"/r/.mps"}


def test_max_parallel_may_reach_k_times_the_gpus_and_no_further():
    assert LocalBackend(max_parallel=6, gpus=["0", "1"], runs_per_gpu=3).max_parallel == 6
    with pytest.raises(ValueError, match="2 visible GPU"):
        LocalBackend(max_parallel=7, gpus=["0", "1"], runs_per_gpu=3)


def test_one_run_per_gpu_is_unchanged():
    backend = LocalBackend(gpus=["0", "1"])
    assert backend.max_parallel == 2
    assert [backend.environment(slot)["CUDA_VISIBLE_DEVICES"] for slot in (0, 1)] == ["0", "1"]
    assert PIPE_VARIABLE not in backend.environment(0)
    with pytest.raises(ValueError, match="--max-parallel 3"):
        LocalBackend(max_parallel=3, gpus=["0", "1"])


# The MPS daemon


def test_the_daemon_is_started_and_stopped_around_a_failing_job(tmp_path, mps_found):
    control = FakeControl()
    backend = LocalBackend(
        gpus=["0"], runs_per_gpu=2, mps_logs=tmp_path / "mps", mps_runner=control
    )
    outcomes = backend.run([broken_job(tmp_path)])
    assert outcomes[0].state is RunState.FAILED
    assert control.commands == STARTED_AND_STOPPED
    start, stop = control.calls[0][1], control.calls[1][1]
    assert start == stop and start[LOG_VARIABLE] == str(tmp_path / "mps")


@pytest.mark.parametrize(("runs_per_gpu", "commands"), [(2, STARTED_AND_STOPPED), (1, [])])
def test_the_daemon_is_stopped_when_the_pool_is_interrupted_and_absent_at_k_1(
    tmp_path, mps_found, monkeypatch, runs_per_gpu, commands
):
    control = FakeControl()
    backend = LocalBackend(
        gpus=["0"], runs_per_gpu=runs_per_gpu, mps_logs=tmp_path / "mps", mps_runner=control
    )

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(backend, "_start", interrupted)
    with pytest.raises(KeyboardInterrupt):
        backend.run([broken_job(tmp_path)])
    assert control.commands == commands


def test_without_the_binary_the_runs_time_slice_after_a_warning(tmp_path, monkeypatch):
    monkeypatch.setattr("xlcl.sweep.mps.shutil.which", lambda name: None)
    control = FakeControl()
    with (
        pytest.warns(UserWarning, match=f"{CONTROL} not found") as warned,
        mps_daemon(tmp_path, runner=control) as daemon,
    ):
        assert daemon is None
    assert control.calls == [] and len(warned) == 1
    assert "\n" not in str(warned[0].message)


def test_a_daemon_that_does_not_start_leaves_time_slicing_after_a_warning(tmp_path, mps_found):
    control = FakeControl(returncode=1, stderr="An instance of this daemon is already running\n")
    with (
        pytest.warns(UserWarning, match="already running"),
        mps_daemon(tmp_path, runner=control) as daemon,
    ):
        assert daemon is None
    assert control.commands == [([CONTROL, "-d"], "")]


# Memory


def xlmr_runs(tmp_path, method: str, graphs: bool):
    rank = {"rank": 16} if method.endswith("lora") else {}
    base = {"model": XLMR, "method": method, "order": ["en-US"], **rank}
    return expand({**base, "train": {"cuda_graphs": graphs}}, {}, [], tmp_path)


def test_runs_that_fit_pass_and_the_largest_peak_decides(tmp_path):
    full = xlmr_runs(tmp_path, "vanilla", graphs=True)  # 7.9 GiB
    lora = xlmr_runs(tmp_path, "shared-lora", graphs=True)  # 4.1 GiB
    h200 = 139 * GIB
    refuse_unfit(lora, 30, h200)  # 123 GiB <= 125.1
    refuse_unfit(full, 15, h200)  # 118.5 GiB
    with pytest.raises(ValueError, match=f"{XLMR} vanilla runs peak at 7.9 GiB") as error:
        refuse_unfit([*lora, *full], 16, h200)  # 126.4 GiB
    assert "at most 15 fit" in str(error.value)


def test_a_model_without_a_measured_peak_is_not_checked(tmp_path):
    runs = expand({"model": "m", "method": "vanilla", "order": ["en-US"]}, {}, [], tmp_path)
    refuse_unfit(runs, 1000, 1 * GIB)


# The command line


@pytest.fixture
def cli(tmp_path):
    app = typer.Typer()
    app.add_typer(sweep_cli.app, name="sweep")
    path = tmp_path / "sweep.yaml"
    base = {"model": XLMR, "method": "vanilla", "order": ["en-US"], "train": {"cuda_graphs": True}}
    path.write_text(yaml.safe_dump({"base": base, "results": str(tmp_path / "results")}))

    def invoke(*args: str):
        return CliRunner().invoke(app, ["sweep", str(path), *args])

    return invoke


def one_line_error(result, text: str) -> None:
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1 and text in result.stderr


def test_cli_refuses_k_below_one(cli):
    one_line_error(cli("--runs-per-gpu", "0"), "error: --runs-per-gpu must be at least 1, got 0")


def test_cli_refuses_k_on_a_machine_without_gpus(cli, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    one_line_error(cli("--runs-per-gpu", "2"), "error: --runs-per-gpu 2: no GPU is visible here")


def test_cli_refuses_a_k_that_does_not_fit(cli, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    monkeypatch.setattr(packing, "gpu_memory", lambda: 16 * GIB)
    one_line_error(
        cli("--runs-per-gpu", "2"),
        f"--runs-per-gpu 2: {XLMR} vanilla runs peak at 7.9 GiB, and 2 of them need 15.8 GiB, "
        "over 90 % of the GPU's 16.0 GiB (at most 1 fit)",
    )


# Slurm and Ray


def test_slurm_packs_k_runs_a_task_on_one_gpu_and_requeues_them_together(tmp_path, monkeypatch):
    from xlcl.sweep.backends.slurm import SlurmBackend, SlurmPackedRuns, pack

    jobs = [broken_job(tmp_path, f"run{index}") for index in range(5)]
    assert [[job.run_id for job in chunk] for chunk in pack(jobs, 2)] == [
        ["run0", "run1"],
        ["run2", "run3"],
        ["run4"],
    ]
    backend = SlurmBackend(tmp_path, cluster="local", max_parallel=5, runs_per_gpu=2)
    parameters = backend.executor()._executor.parameters
    assert (parameters["gpus_per_node"], parameters["cpus_per_task"]) == (1, 2)
    task = SlurmPackedRuns(tmp_path / ".mps")
    assert task.checkpoint(jobs[:2]).args == (jobs[:2],)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # a node without a GPU
    outcomes = task(jobs[:2])
    assert [outcome.state for outcome in outcomes] == [RunState.FAILED] * 2
    assert "no GPU is visible" in (outcomes[0].error or "")
    with pytest.raises(ValueError, match="--gpus-per-run must be 1"):
        make_backend("slurm", tmp_path, gpus_per_run=2, runs_per_gpu=2)


def test_ray_tasks_take_a_kth_of_a_gpu():
    pytest.importorskip("ray")
    from xlcl.sweep.backends.ray import RayBackend, task_options

    assert task_options(None, 4, cluster_gpus=8)["num_gpus"] == 0.25
    assert task_options(None, 1, cluster_gpus=8)["num_gpus"] == 1
    assert task_options(None, 1, cluster_gpus=0)["num_gpus"] == 0
    assert task_options(1, 2, cluster_gpus=1) == {"num_cpus": 1, "num_gpus": 0.5, "max_retries": 0}
    with pytest.raises(ValueError, match="the Ray cluster has no GPU"):
        task_options(None, 2, cluster_gpus=0)
    with pytest.raises(ValueError, match="--gpus-per-run must be 1"):
        RayBackend(gpus_per_run=2, runs_per_gpu=2)


# Concurrent runs score exactly as sequential ones


@pytest.mark.integration
def test_concurrent_runs_write_the_score_tables_of_sequential_runs(
    sweep_file, tmp_path, monkeypatch
):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # every worker, whatever the parallelism
    document = yaml.safe_load(sweep_file.read_text())
    document["variants"] = document["variants"][:2]  # VANILLA and SHARED LoRA 4, both finish
    document["base"]["order"] = ["en-US"]  # one step and one score cell a row: enough, and fast
    path = tmp_path / "two.yaml"
    path.write_text(yaml.safe_dump(document))
    tables = {}
    for parallel in (1, 2):
        sweep = load_sweep(path, results=tmp_path / f"parallel-{parallel}")
        entries = run_sweep(sweep, LocalBackend(max_parallel=parallel, gpus=[]))
        assert [entry.status.state for entry in entries] == [RunState.DONE] * 2
        tables[parallel] = {
            (config.run_id, name): pd.read_parquet(sweep.results / config.run_id / name)
            for config in sweep.runs
            for name in ("scores.parquet", "curves.parquet")
        }
    assert tables[1].keys() == tables[2].keys()
    for key, sequential in tables[1].items():
        concurrent = tables[2][key]
        # Wall-clock seconds are the one column that may differ.
        pd.testing.assert_frame_equal(
            concurrent.drop(columns=["seconds"], errors="ignore"),
            sequential.drop(columns=["seconds"], errors="ignore"),
            check_exact=True,
        )
