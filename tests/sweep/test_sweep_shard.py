"""`--shard K/N`: a sweep split across machines by work, the same split on every machine."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from xlcl.cli import app
from xlcl.sweep import RunState, expand, load_sweep, run_sweep
from xlcl.sweep import shard as shard_module
from xlcl.sweep.shard import Shard, assign, parse_shard, work
from xlcl.sweep.spec import Sweep
from xlcl.sweep.worker import Outcome

REPO = Path(__file__).resolve().parents[2]
BASE = {"model": "m", "method": "vanilla", "order": ["en-US", "de-DE"]}


class Done:
    """A backend whose every run finishes at once (writes its DONE marker)."""

    name = "done"

    def __init__(self):
        self.calls = []

    def run(self, jobs):
        self.calls.append([job.run_id for job in jobs])
        for job in jobs:
            job.run_dir.mkdir(parents=True, exist_ok=True)
            (job.run_dir / "DONE").write_text("")
        return [Outcome(job.run_id, RunState.DONE, "", recorded=False) for job in jobs]


@pytest.mark.parametrize("text", ["2", "0/2", "3/2", "1/0", "a/b", "1/2/3", ""])
def test_a_malformed_shard_is_a_one_line_error_naming_it(text):
    with pytest.raises(ValueError, match="--shard") as error:
        parse_shard(text)
    assert "\n" not in str(error.value)


def test_shards_parse_and_print_as_k_of_n():
    assert parse_shard(" 2 / 3 ") == Shard(2, 3)
    assert str(Shard(1, 2)) == "1/2"


def test_the_heaviest_run_goes_first_to_the_lightest_shard(monkeypatch):
    runs = expand(BASE, {"train.seed": [1, 2, 3, 4, 5, 6]}, [], Path("results"))
    works = dict(zip((config.run_id for config in runs), [2, 5, 3, 1, 4, 3], strict=True))
    monkeypatch.setattr(shard_module, "work", lambda config: works[config.run_id])
    # By work: 5 -> 1 (5, 0); 4 -> 2 (5, 4); 3 (seed 3) -> 2 (5, 7); 3 (seed 6) -> 1 (8, 7);
    # 2 -> 2 (8, 9); 1 -> 1 (9, 9).
    assert [shard.index for shard in assign(runs, 2)] == [2, 1, 2, 1, 2, 1]
    assert [config.run_id for config in Shard(1, 2).select(runs)] == [
        runs[1].run_id,
        runs[3].run_id,
        runs[5].run_id,
    ]


@pytest.mark.parametrize("count", [1, 2, 3, 5, 12, 13])
def test_the_replication_sweeps_shards_partition_it_and_balance_its_work(count):
    runs = load_sweep(REPO / "configs" / "sweeps" / "replication.yaml").runs
    shards = [Shard(index, count).select(runs) for index in range(1, count + 1)]
    chosen = [config.run_id for share in shards for config in share]
    assert sorted(chosen) == sorted(config.run_id for config in runs)  # each run once
    for share in shards:  # in the sweep's order
        assert [runs.index(config) for config in share] == sorted(runs.index(c) for c in share)
    loads = [sum(work(config) for config in share) for share in shards]
    # Longest processing time first: no shard is more than one run heavier than another.
    assert max(loads) - min(loads) <= max(work(config) for config in runs)


def test_each_machine_runs_its_share_and_lists_the_whole_sweep(tmp_path):
    runs = expand(BASE, {"train.seed": [1, 2, 3]}, [], tmp_path / "first")
    seen = []
    for index, results in ((1, tmp_path / "first"), (2, tmp_path / "second")):
        backend = Done()
        sweep = Sweep(runs=runs, results=results, source="test")
        entries = run_sweep(sweep, backend, shard=Shard(index, 2))
        (ran,) = backend.calls
        assert [entry.run["run_id"] for entry in entries] == ran
        assert all(entry.status.state is RunState.DONE for entry in entries)
        listed = json.loads((results / "sweep.json").read_text())["runs"]
        assert [run["run_id"] for run in listed] == [config.run_id for config in runs]
        seen += ran
        # A restart finds its share done, whatever the other machine did.
        again = Done()
        run_sweep(sweep, again, shard=Shard(index, 2))
        assert again.calls == []
    assert sorted(seen) == sorted(config.run_id for config in runs)


def test_the_cli_prices_a_shards_runs_and_refuses_a_bad_shard():
    sweep_file = str(REPO / "configs" / "sweeps" / "replication.yaml")
    runner = CliRunner()
    result = runner.invoke(app, ["sweep", sweep_file, "--dry-run", "--json", "--shard", "2/2"])
    assert result.exit_code == 0, result.output
    listed = [row["run_id"] for row in json.loads(result.stdout)["runs"]]
    runs = load_sweep(REPO / "configs" / "sweeps" / "replication.yaml").runs
    assert listed == [config.run_id for config in Shard(2, 2).select(runs)]
    bad = runner.invoke(app, ["sweep", sweep_file, "--dry-run", "--shard", "3/2"])
    assert bad.exit_code != 0
    assert "--shard 3/2" in bad.output
