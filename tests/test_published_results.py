"""Published results (results/<name>/) hold small files only: no weights, no checkpoints.

What the repository tracks there is read with git, so that a working copy's ignored
checkpoints and logs (a sweep running here) do not count.
"""

from __future__ import annotations

import subprocess
from collections import defaultdict
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# What a finished run directory publishes (docs/run-directory.md), and a results folder's own.
RUN_FILES = {
    "DONE",
    "manifest.json",
    "scores.parquet",
    "curves.parquet",
    "utterances.npz",
    "vocabulary.json",
    "sweep-state.json",
}
FOLDER_FILES = {"sweep.json"}
MAX_FILE_BYTES = 2 * 2**20
MAX_FOLDER_BYTES = 20 * 2**20  # the replication issue's limit, for each results folder


def tracked_results() -> list[Path]:
    try:
        listed = subprocess.run(
            ["git", "ls-files", "results"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return [Path(name) for name in listed]


def test_published_results_are_small_files_of_finished_runs() -> None:
    files = tracked_results()
    sizes: dict[str, int] = defaultdict(int)
    for path in files:
        folder, *inner = path.parts[1:]
        size = (REPO / path).stat().st_size
        sizes[folder] += size
        assert size <= MAX_FILE_BYTES, f"{path}: {size} bytes"
        if inner[0] == "planner":  # fitted interference models (docs/planner.md)
            assert path.suffix == ".json", path
        elif len(inner) == 1:
            assert inner[0] in FOLDER_FILES, path
        else:
            assert len(inner) == 2 and inner[1] in RUN_FILES, path
    for folder, total in sizes.items():
        assert total <= MAX_FOLDER_BYTES, f"results/{folder}: {total / 2**20:.1f} MiB"
    runs = {path.parent for path in files if path.name == "DONE"}
    run_folders = {path.parent for path in files if path.name in RUN_FILES}
    assert run_folders == runs, f"unfinished runs published: {sorted(run_folders - runs)}"
    for run in runs:
        for needed in ("manifest.json", "scores.parquet", "curves.parquet"):
            assert (REPO / run / needed).is_file(), f"{run}: no {needed}"
