"""The offline-model cache: resolution, atomic import, force, errors (with a fake model)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from xlcl.models import OFFLINE_MODELS, OfflineModel, cache_root, offline_model, resolve_model
from xlcl.models.offline import DONE, import_model, is_complete


class FakeConvert:
    """Writes one file; counts calls; optionally fails or runs a hook before returning."""

    def __init__(self) -> None:
        self.calls = 0
        self.fail = False
        self.hook: Callable[[], None] | None = None

    def __call__(self, dest: Path, report: Callable[[int, int], None]) -> dict[str, object]:
        self.calls += 1
        report(0, 2)
        (dest / "config.json").write_text(json.dumps({"call": self.calls}))
        report(1, 2)
        if self.fail:
            raise RuntimeError("conversion failed")
        if self.hook:
            self.hook()
        report(2, 2)
        return {"versions": {"fake": "1"}}


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> tuple[OfflineModel, FakeConvert]:
    monkeypatch.setenv("XLCL_CACHE", str(tmp_path / "cache"))
    convert = FakeConvert()
    model = OfflineModel("fake", "a fake model", convert, lambda: True)
    monkeypatch.setitem(OFFLINE_MODELS, model.key, model)
    return model, convert


def _cached(path: str | Path) -> dict[str, object]:
    return json.loads((Path(path) / "config.json").read_text())


def test_cache_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XLCL_CACHE", str(tmp_path / "c"))
    assert cache_root() == tmp_path / "c"
    monkeypatch.delenv("XLCL_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cache_root() == tmp_path / ".cache" / "xlcl"


@pytest.mark.parametrize(
    "name", ["FacebookAI/xlm-roberta-base", "./e5-small-offline", "/data/models/x", "e5-small"]
)
def test_other_names_pass_through(name: str) -> None:
    assert resolve_model(name) == name


def test_resolve_imports_once(fake: tuple[OfflineModel, FakeConvert], tmp_path: Path) -> None:
    _model, convert = fake
    path = resolve_model("fake-offline")
    assert Path(path) == tmp_path / "cache" / "models" / "fake-offline"
    assert is_complete(Path(path))
    assert json.loads((Path(path) / DONE).read_text()) == {
        "model": "fake-offline",
        "versions": {"fake": "1"},
    }
    assert resolve_model("fake-offline") == path
    assert convert.calls == 1


def test_force_rebuilds(fake: tuple[OfflineModel, FakeConvert]) -> None:
    model, convert = fake
    path = import_model(model, show_progress=False)
    assert import_model(model, force=True, show_progress=False) == path
    assert convert.calls == 2
    assert _cached(path) == {"call": 2}
    assert sorted(p.name for p in path.parent.iterdir()) == ["fake-offline"]


def test_failed_import_leaves_nothing(fake: tuple[OfflineModel, FakeConvert]) -> None:
    model, convert = fake
    convert.fail = True
    with pytest.raises(RuntimeError, match="conversion failed"):
        import_model(model, show_progress=False)
    parent = cache_root() / "models"
    assert list(parent.iterdir()) == []


def test_incomplete_directory_is_replaced(fake: tuple[OfflineModel, FakeConvert]) -> None:
    model, _convert = fake
    dest = cache_root() / "models" / "fake-offline"
    dest.mkdir(parents=True)
    (dest / "config.json").write_text("half written")
    import_model(model, show_progress=False)
    assert _cached(dest) == {"call": 1}
    assert is_complete(dest)


def test_concurrent_import_that_finished_first_wins(
    fake: tuple[OfflineModel, FakeConvert],
) -> None:
    model, convert = fake
    dest = cache_root() / "models" / "fake-offline"

    def other_process_finishes() -> None:
        dest.mkdir(parents=True)
        (dest / "config.json").write_text(json.dumps({"call": "other"}))
        (dest / DONE).write_text("{}")

    convert.hook = other_process_finishes
    assert import_model(model, show_progress=False) == dest
    assert _cached(dest) == {"call": "other"}
    assert sorted(p.name for p in dest.parent.iterdir()) == ["fake-offline"]


def test_cache_entry_is_readable_like_mkdir_makes_it(
    fake: tuple[OfflineModel, FakeConvert],
) -> None:
    model, _ = fake
    old = os.umask(0o022)
    try:
        path = import_model(model, show_progress=False)
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o755


def test_unknown_offline_model_suggests_a_name() -> None:
    with pytest.raises(KeyError, match="did you mean 'e5-small'"):
        offline_model("e5-smal")
    assert offline_model("e5-small-offline") is OFFLINE_MODELS["e5-small"]
