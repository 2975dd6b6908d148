"""`xlcl model import|list` (with a fake offline model, so no real conversion runs here)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from xlcl.cli import app
from xlcl.models import OFFLINE_MODELS, OfflineModel

runner = CliRunner()


def _convert(dest: Path, report: Callable[[int, int], None]) -> dict[str, object]:
    report(1, 1)
    (dest / "config.json").write_text("{}")
    return {"versions": {"fake": "1"}}


@pytest.fixture
def cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("XLCL_CACHE", str(tmp_path))
    fake = OfflineModel("fake", "a fake model", _convert, lambda: True)
    monkeypatch.setitem(OFFLINE_MODELS, fake.key, fake)
    return tmp_path


def test_import_prints_the_cached_path(cache: Path) -> None:
    result = runner.invoke(app, ["model", "import", "fake"])
    assert result.exit_code == 0, result.output
    path = cache / "models" / "fake-offline"
    assert result.stdout.strip() == str(path)
    assert json.loads((path / "DONE").read_text())["model"] == "fake-offline"
    again = runner.invoke(app, ["model", "import", "fake-offline", "--force"])
    assert again.exit_code == 0, again.output
    assert again.stdout.strip() == str(path)


def test_import_unknown_model_suggests_a_name(cache: Path) -> None:
    result = runner.invoke(app, ["model", "import", "e5-smal"])
    assert result.exit_code == 2
    assert "did you mean 'e5-small'" in result.output


def test_list_shows_models_and_whether_cached(cache: Path) -> None:
    before = runner.invoke(app, ["model", "list"], env={"COLUMNS": "250"})
    assert before.exit_code == 0, before.output
    rows = {line.split()[1]: line for line in before.stdout.splitlines() if "-offline" in line}
    assert set(rows) == {"e5-small-offline", "fake-offline"}
    assert "│ no " in rows["fake-offline"]
    runner.invoke(app, ["model", "import", "fake"])
    after = runner.invoke(app, ["model", "list"], env={"COLUMNS": "250"})
    fake_row = next(line for line in after.stdout.splitlines() if "fake-offline" in line)
    assert "│ yes       │ yes " in fake_row
