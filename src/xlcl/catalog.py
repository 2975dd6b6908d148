"""The configs that ship with xlcl, by name: ``paper/vanilla`` is ``configs/paper/vanilla.yaml``.

``xlcl run paper/vanilla --set order=3`` and ``xlcl sweep sweeps/paper`` find them inside the
installed package (read through `importlib.resources`), so they work outside a checkout, where
``configs/`` is a link to the same files. A file that exists on disk wins over a name.
"""

from __future__ import annotations

import difflib
from importlib import resources
from pathlib import Path

from xlcl.config import ConfigError

SUFFIX = ".yaml"
SWEEPS = "sweeps"  # the sweep files' folder; every other config is a run config


def config_root() -> Path:
    """The packaged ``configs/`` folder."""
    root = resources.files("xlcl").joinpath("configs")
    if not isinstance(root, Path):  # a zipped install: sweeps need real relative paths
        raise ConfigError(f"xlcl's packaged configs are not files on disk: {root}")
    return root


def packaged_names(sweeps: bool = False) -> list[str]:
    """The packaged run configs' names (or, with ``sweeps``, the sweep files'), sorted."""
    root = config_root()
    names = (path.relative_to(root).with_suffix("").as_posix() for path in root.rglob("*.yaml"))
    return sorted(name for name in names if (name.split("/")[0] == SWEEPS) == sweeps)


def find_config(argument: str | Path, sweep: bool = False) -> Path:
    """The file ``argument`` names: itself if it is a file, else the packaged config of that name.

    An unknown name is a one-line `ConfigError` with the closest packaged name.
    """
    path = Path(argument)
    if path.is_file():
        return path
    name = path.as_posix().removesuffix(SUFFIX)
    names = packaged_names(sweep)
    if name in names:
        return config_root() / f"{name}{SUFFIX}"
    kind = "sweep" if sweep else "config"
    close = difflib.get_close_matches(name, names, n=1)
    if close:
        hint = f"did you mean {close[0]}?"
    else:
        folders = sorted({name.rpartition("/")[0] + "/" for name in names})
        hint = f"packaged {kind}s are in {', '.join(folders)}"
    raise ConfigError(f"{argument}: no such file, nor a packaged {kind}; {hint}")
