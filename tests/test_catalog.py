"""Packaged configs by name: `xlcl.catalog`, and `xlcl run` / `xlcl sweep` taking a name."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from xlcl.catalog import config_root, find_config, packaged_names
from xlcl.cli import app
from xlcl.config import ConfigError, load_config

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()


def test_the_checkout_configs_are_the_packaged_ones():
    assert (REPO / "configs").resolve() == config_root().resolve()
    assert "paper/vanilla" in packaged_names()
    assert "demo/quick/vanilla" in packaged_names()
    assert not any(name.startswith("sweeps/") for name in packaged_names())
    assert packaged_names(sweeps=True) == [
        "sweeps/paper",
        "sweeps/planner-validation",
        "sweeps/remedies",
        "sweeps/remedies-2h",
        "sweeps/replication",
        "sweeps/replication-gpu",
        "sweeps/replication-xlmr",
    ]


def test_find_config_prefers_a_file_on_disk(tmp_path, monkeypatch):
    assert find_config("paper/vanilla") == config_root() / "paper" / "vanilla.yaml"
    assert find_config("paper/vanilla.yaml") == config_root() / "paper" / "vanilla.yaml"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "paper").mkdir()
    (tmp_path / "paper" / "vanilla.yaml").write_text("model: tiny\nmethod: vanilla\norder: 2\n")
    assert find_config("paper/vanilla.yaml") == Path("paper/vanilla.yaml")
    assert load_config(find_config("paper/vanilla.yaml")).order == 2


def test_an_unknown_name_suggests_the_closest():
    with pytest.raises(ConfigError) as caught:
        find_config("paper/vanila")
    assert str(caught.value) == (
        "paper/vanila: no such file, nor a packaged config; did you mean paper/vanilla?"
    )
    with pytest.raises(ConfigError, match=r"did you mean sweeps/paper\?$"):
        find_config("sweeps/papr", sweep=True)
    with pytest.raises(ConfigError, match=r"packaged configs are in demo/, demo/quick/, paper/$"):
        find_config("zzz")


def test_run_takes_a_packaged_name_with_overrides(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["run", "paper/vanilla", "--set", "order=3", "--print-config"])
    assert result.exit_code == 0, result.output
    printed = yaml.safe_load(result.stdout)
    expected = load_config(REPO / "configs" / "paper" / "vanilla.yaml", ["order=3"])
    assert printed == expected.model_dump(mode="json")


def test_run_with_an_unknown_name_fails_in_one_line_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["run", "demo/quick/vanila"])
    assert result.exit_code == 2
    assert result.stderr == (
        "error: demo/quick/vanila: no such file, nor a packaged config; "
        "did you mean demo/quick/vanilla?\n"
    )
    assert list(tmp_path.iterdir()) == []


def test_sweep_takes_a_packaged_name(tmp_path):
    args = ["sweep", "sweeps/paper", "--dry-run", "--json", "--results", str(tmp_path / "r")]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert '"run_id"' in result.stdout
    result = runner.invoke(app, ["sweep", "sweeps/papr", "--dry-run"])
    assert result.exit_code == 2
    assert result.stderr.endswith("did you mean sweeps/paper?\n")
