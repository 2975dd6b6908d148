import contextlib
import hashlib
import json
import math
import os
import pathlib
import pickle
import random
import re
import sys

import numpy as np
import pytest
import torch
from transformers import get_linear_schedule_with_warmup

from xlcl.checkpoint import (
    COMPLETE,
    STATE,
    WEIGHTS,
    CheckpointMismatch,
    UnsafeCheckpoint,
    latest_checkpoint,
    latest_partial,
    save_checkpoint,
    save_partial,
)
from xlcl.state_tree import decode_state_tree, encode_state_tree


def weights(value: float) -> dict[str, torch.Tensor]:
    return {"layer.weight": torch.full((2, 3), value), "layer.bias": torch.zeros(3)}


def test_the_newest_complete_checkpoint_is_found_and_old_ones_pruned(tmp_path):
    for step in range(4):
        save_checkpoint(tmp_path, step, weights(float(step)), "abc", keep=2)
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["step-0002", "step-0003"]
    checkpoint = latest_checkpoint(tmp_path, "abc")
    assert checkpoint is not None and checkpoint.step == 3
    restored = checkpoint.weights()
    assert restored is not None
    assert torch.equal(restored["layer.weight"], torch.full((2, 3), 3.0))


def test_a_checkpoint_without_weights_restores_none(tmp_path):
    save_checkpoint(tmp_path, 0, None, "abc", keep=2)
    checkpoint = latest_checkpoint(tmp_path, "abc")
    assert checkpoint is not None and checkpoint.weights() is None


def test_incomplete_and_corrupt_checkpoints_are_skipped_with_a_warning(tmp_path):
    for step in range(3):
        save_checkpoint(tmp_path, step, weights(float(step)), "abc", keep=3)
    newest = tmp_path / "checkpoints" / "step-0002"
    (newest / COMPLETE).unlink()  # killed before the marker
    middle = tmp_path / "checkpoints" / "step-0001"
    data = (middle / WEIGHTS).read_bytes()
    (middle / WEIGHTS).write_bytes(data[: len(data) // 2])  # truncated
    with pytest.warns(UserWarning) as caught:
        checkpoint = latest_checkpoint(tmp_path, "abc")
    assert checkpoint is not None and checkpoint.step == 0
    messages = [str(w.message) for w in caught]
    assert any("step-0002" in m and "not marked complete" in m for m in messages)
    assert any("step-0001" in m and "checksum" in m for m in messages)


def test_a_checkpoint_of_another_config_is_refused(tmp_path):
    save_checkpoint(tmp_path, 0, weights(0.0), "abc", keep=2)
    with pytest.raises(CheckpointMismatch, match="abc"):
        latest_checkpoint(tmp_path, "xyz")


def test_the_rng_states_come_back(tmp_path):
    torch.manual_seed(7)
    path = save_checkpoint(tmp_path, 0, None, "abc", keep=1)
    expected = torch.rand(3)
    torch.manual_seed(99)
    checkpoint = latest_checkpoint(tmp_path, "abc")
    assert checkpoint is not None
    checkpoint.restore_rng()
    assert torch.equal(torch.rand(3), expected)
    assert json.loads((path / "state.json").read_text())["step"] == 0


@pytest.mark.parametrize("kind", ["partial", "step"])
def test_a_kill_while_a_checkpoint_replaces_its_namesake_keeps_the_old_one(
    tmp_path, monkeypatch, kind
):
    # A checkpoint inside a step is rewritten under one name (and a step's, when a step is
    # saved again). Killed between moving the old one aside and moving the new one in, the
    # old one must still be found.
    def save(value):
        if kind == "partial":
            return save_partial(tmp_path, 2, weights(value), "abc", {"batches_done": value})
        return save_checkpoint(tmp_path, 2, weights(value), "abc", keep=2)

    def find():
        if kind == "partial":
            return latest_partial(tmp_path, "abc", 2)
        return latest_checkpoint(tmp_path, "abc")

    save(1.0)
    real_replace = os.replace

    def killed_after_setting_aside(source, target):
        real_replace(source, target)
        if str(target).endswith(".old"):
            raise KeyboardInterrupt

    monkeypatch.setattr("xlcl.checkpoint.os.replace", killed_after_setting_aside)
    with pytest.raises(KeyboardInterrupt):
        save(2.0)
    monkeypatch.setattr("xlcl.checkpoint.os.replace", real_replace)
    found = find()
    assert found is not None and found.step == 2
    assert torch.equal(found.weights()["layer.weight"], torch.full((2, 3), 1.0))
    save(3.0)  # the next save cleans up and replaces it
    assert torch.equal(find().weights()["layer.weight"], torch.full((2, 3), 3.0))
    assert [p.name for p in (tmp_path / "checkpoints").iterdir() if p.name.startswith(".")] == []


def test_a_set_aside_step_checkpoint_is_pruned_like_the_others(tmp_path):
    save_checkpoint(tmp_path, 0, weights(0.0), "abc", keep=2)
    parent = tmp_path / "checkpoints"
    os.replace(parent / "step-0000", parent / ".step-0000.old")  # as a kill between renames
    for step in (1, 2):
        save_checkpoint(tmp_path, step, weights(float(step)), "abc", keep=2)
    assert sorted(p.name for p in parent.iterdir()) == ["step-0001", "step-0002"]


def draws() -> tuple[float, list[float], list[float]]:
    return random.random(), np.random.rand(3).tolist(), torch.rand(3).tolist()


def test_python_numpy_and_torch_random_states_come_back(tmp_path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    save_checkpoint(tmp_path, 0, None, "abc", keep=1)
    expected = draws()
    random.seed(9)
    np.random.seed(9)
    torch.manual_seed(9)
    checkpoint = latest_checkpoint(tmp_path, "abc")
    assert checkpoint is not None
    checkpoint.restore_rng()
    assert draws() == expected
    assert not list((tmp_path / "checkpoints").glob("*/*.pkl"))


# State trees ------------------------------------------------------------------------------


def assert_same(actual, expected, where="tree"):
    """Equal and of the same types all the way down; tensors and arrays bit for bit."""
    if isinstance(expected, torch.Tensor):
        assert type(actual) is torch.Tensor, where
        described = (actual.dtype, actual.shape, actual.device)
        assert described == (expected.dtype, expected.shape, expected.device), where
        as_bytes = [t.detach().contiguous().flatten().view(torch.uint8) for t in (actual, expected)]
        assert torch.equal(*as_bytes), where
    elif isinstance(expected, np.ndarray | np.generic):
        assert type(actual) is type(expected) and actual.dtype == expected.dtype, where
        assert np.shape(actual) == np.shape(expected), where
        assert actual.tobytes() == expected.tobytes(), where
    elif type(expected) is float:
        assert type(actual) is float, where
        if math.isnan(expected):
            assert math.isnan(actual), where
        else:
            assert (actual, math.copysign(1, actual)) == (expected, math.copysign(1, expected))
    elif isinstance(expected, dict):
        assert type(actual) is dict, where
        assert len(actual) == len(expected), where
        for (key, value), (expected_key, expected_value) in zip(
            actual.items(), expected.items(), strict=True
        ):
            assert_same(key, expected_key, f"{where} key {expected_key!r}")
            assert_same(value, expected_value, f"{where}[{expected_key!r}]")
    elif type(expected) in (list, tuple):
        assert type(actual) is type(expected) and len(actual) == len(expected), where
        for i, (item, expected_item) in enumerate(zip(actual, expected, strict=True)):
            assert_same(item, expected_item, f"{where}[{i}]")
    else:
        assert type(actual) is type(expected) and actual == expected, where


def adamw_state(fused: bool) -> dict[str, dict]:
    """AdamW's and its linear schedule's state after three updates."""
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    # A fused AdamW takes its learning rate as a tensor (to change it without recompiling).
    lr = torch.tensor(1e-3) if fused else 1e-3
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, fused=fused)
    scheduler = get_linear_schedule_with_warmup(optimizer, 2, 10)
    for _ in range(3):
        model(torch.randn(4, 3)).sum().backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
    state = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}
    assert set(state["optimizer"]["state"]) == {0, 1}  # int keys
    assert type(state["optimizer"]["param_groups"][0]["betas"]) is tuple
    assert state["optimizer"]["state"][0]["step"].shape == ()  # a 0-dim tensor
    assert isinstance(state["optimizer"]["param_groups"][0]["lr"], torch.Tensor) is fused
    return state


def train_state_like() -> dict:
    """What `TrainState.to_dict` holds: numbers, records, weights, optimizer, schedule, RNG."""
    return {
        "epoch": 2,
        "batches_done": 7,
        "loss_sum": 3.25,
        "stale": 0,
        "best_dev_f1": 0.5,
        "best_epoch": 1,
        "epochs": [{"epoch": 1, "train_loss": 0.75, "dev_f1": 0.5, "seconds": 1.5}],
        "best_weights": weights(0.5),
        **adamw_state(fused=False),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": None,
    }


def tensors_and_arrays() -> dict:
    x = torch.arange(6.0).reshape(2, 3)
    return {
        "0-dim": torch.tensor(3.5),
        "bool": torch.tensor([True, False]),
        "bf16": torch.ones(2, dtype=torch.bfloat16),
        "long": torch.arange(5),
        "empty": torch.zeros(0, 3),
        "nan": torch.tensor([math.nan]),
        "transposed": x.T,  # not contiguous
        "twice": [x, x],  # the same storage twice, which safetensors alone refuses
        "row of it": x[1],
        "parameter": torch.nn.Parameter(torch.ones(2)),
        "uint32": np.arange(5, dtype=np.uint32),
        "0-d array": np.array(2.5),
        "float16": np.ones((2, 2), np.float16),
        "fortran": np.asfortranarray(np.arange(6.0).reshape(2, 3)),
        "numpy scalars": [np.float64(0.1), np.int32(-3), np.bool_(True)],
    }


TREES = {
    "scalars": [0, -7, 2**200, -(2**130), 1.5, -0.0, math.inf, -math.inf, math.nan, True, None],
    "strings": ["", "ü", "$tuple", "$"],
    "keys": {1: "int", -2.5: "float", (1, "a"): "tuple", None: "none", False: "bool"},
    "keys like tags": {"$tensor": "a string key", "plain": {"$ndarray": 3}},
    "containers": {"empty": [[], (), {}], "nested": ((1, (2,)), [(), [{}]])},
    "tensors and arrays": tensors_and_arrays(),
    "numpy PCG64": np.random.default_rng(5).bit_generator.state,  # 128-bit ints
    "rng states": {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    },
    "AdamW and its schedule": adamw_state(fused=False),
    "fused AdamW with a tensor lr": adamw_state(fused=True),
    "train state": train_state_like(),
}


@pytest.mark.parametrize("tree", TREES.values(), ids=TREES.keys())
def test_a_state_tree_comes_back_exactly(tree):
    encoded = encode_state_tree(tree)
    json.dumps(encoded.document, allow_nan=False)  # strict JSON
    assert all(t.device.type == "cpu" and t.is_contiguous() for t in encoded.tensors.values())
    assert_same(decode_state_tree(encoded), tree)


@pytest.mark.parametrize(
    ("tree", "where"),
    [
        ({"optimizer": {"groups": [object()]}}, "tree['optimizer']['groups'][0]: "),
        ({"locales": {"en-US", "de-DE"}}, "tree['locales']: "),
        ({"dtype": torch.float32}, "tree['dtype']: "),
        ({"strings": np.array(["a"])}, "tree['strings']: "),
        ({"by tensor": {torch.tensor(1): 2}}, "tree['by tensor']: "),
    ],
)
def test_what_a_state_tree_cannot_hold_is_refused_saying_where_it_is(tree, where):
    with pytest.raises(TypeError, match=f"^{re.escape(where)}"):
        encode_state_tree(tree)


def test_the_train_state_comes_back_exactly_without_torch_save(tmp_path):
    state = train_state_like()
    path = save_partial(tmp_path, 1, weights(1.0), "abc", state)
    assert sorted(p.name for p in path.iterdir()) == [
        "COMPLETE",
        "model.safetensors",
        "rng.json",
        "rng.safetensors",
        "state.json",
        "train_state.json",
        "train_state.safetensors",
    ]
    partial = latest_partial(tmp_path, "abc", 1)
    assert partial is not None
    assert_same(partial.train_state(), state)


def test_extra_state_comes_back_from_step_and_partial_checkpoints(tmp_path):
    state = {
        "strategy": {
            "name": "ewc",
            "lambda": 0.4,
            "count": 3,
            "fisher": {"layer.weight": torch.rand(2, 3)},
            "teacher": weights(7.0),
            "seen": ("en-US",),
        }
    }
    save_checkpoint(tmp_path, 0, weights(0.0), "abc", keep=2, state=state)
    assert_same(latest_checkpoint(tmp_path, "abc").state(), state)
    save_partial(tmp_path, 1, weights(1.0), "abc", {"batches_done": 3}, state=state)
    partial = latest_partial(tmp_path, "abc", 1)
    assert_same(partial.state(), state)
    assert partial.train_state() == {"batches_done": 3}
    save_checkpoint(tmp_path, 1, weights(1.0), "abc", keep=2)  # no state this time
    assert latest_checkpoint(tmp_path, "abc").state() == {}


def test_extra_state_is_checked_against_its_checksum(tmp_path):
    path = save_checkpoint(tmp_path, 0, None, "abc", keep=2, state={"fisher": torch.ones(3)})
    tensors = path / "extra_state.safetensors"
    tensors.write_bytes(tensors.read_bytes()[:-4] + b"\0\0\0\0")  # the last value changed
    with pytest.warns(UserWarning, match="extra_state.safetensors .*does not match"):
        assert latest_checkpoint(tmp_path, "abc") is None


# Checkpoints written before state trees ---------------------------------------------------


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_old_format(run_dir, name, step, rng_pickle, train_state=None):
    """A checkpoint as xlcl wrote it before state trees: ``rng.pkl``, ``train_state.pt``."""
    directory = run_dir / "checkpoints" / name
    directory.mkdir(parents=True)
    (directory / "rng.pkl").write_bytes(rng_pickle)
    if train_state is not None:
        torch.save(train_state, directory / "train_state.pt")
    checksums = {path.name: sha256(path) for path in directory.iterdir()}
    state = {"step": step, "config_hash": "abc", "sha256": checksums}
    (directory / STATE).write_text(json.dumps(state, indent=2) + "\n")
    (directory / COMPLETE).write_text("")
    return directory


def rng_pickle(torch_state=None):
    """The pickle the old `rng.pkl` held; its torch state replaced by `torch_state` if given."""
    states = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state() if torch_state is None else torch_state,
    }
    return pickle.dumps(states)


def test_a_checkpoint_of_the_old_format_still_resumes_exactly(tmp_path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    write_old_format(tmp_path, "step-0001", 1, rng_pickle())
    expected = draws()
    state = train_state_like()
    write_old_format(tmp_path, "partial-step-0002", 2, rng_pickle(), train_state=state)
    checkpoint = latest_checkpoint(tmp_path, "abc")
    assert checkpoint is not None and checkpoint.step == 1
    checkpoint.restore_rng()
    assert draws() == expected
    assert checkpoint.weights() is None and checkpoint.state() == {}
    partial = latest_partial(tmp_path, "abc", 2)
    assert partial is not None
    assert_same(partial.train_state(), state)


class Planted:
    """Unpickled by plain pickle, it creates `marker`: what a planted pickle could do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.touch, (self.marker,)


def test_a_planted_pickle_in_an_old_format_checkpoint_is_refused_and_never_runs(tmp_path):
    control = tmp_path / "control"
    pickle.loads(pickle.dumps(Planted(control)))
    assert control.exists()  # the payload is live: plain pickle runs it
    marker = tmp_path / "MARKER"
    run_dir = tmp_path / "run"
    # Checksums that match: the checkpoints look valid, and are found.
    write_old_format(run_dir, "step-0000", 0, rng_pickle(torch_state=Planted(marker)))
    write_old_format(run_dir, "partial-step-0001", 1, rng_pickle(), train_state=Planted(marker))
    checkpoint = latest_checkpoint(run_dir, "abc")
    assert checkpoint is not None
    with pytest.raises(UnsafeCheckpoint, match=r"rng\.pkl refers to pathlib\.Path\.touch"):
        checkpoint.restore_rng()
    partial = latest_partial(run_dir, "abc", 1)
    assert partial is not None
    with pytest.raises(UnsafeCheckpoint, match=r"train_state\.pt"):
        partial.train_state()
    assert not marker.exists()


_unpicklings: list[list[str]] = []


def _record_unpickling(event, args):
    if event == "pickle.find_class":
        for unpicklings in _unpicklings:
            unpicklings.append(f"{event}{args}")


@contextlib.contextmanager
def recording_unpickling(monkeypatch):
    """Every global a pickle looks up and every `torch.load`, while in the block."""
    if not hasattr(sys, "_xlcl_test_unpickling_audit"):  # an audit hook cannot be removed
        sys.addaudithook(_record_unpickling)
        sys._xlcl_test_unpickling_audit = True
    unpicklings: list[str] = []
    real_load = torch.load

    def recorded_load(path, *args, **kwargs):
        unpicklings.append(f"torch.load({path})")
        return real_load(path, *args, **kwargs)

    monkeypatch.setattr(torch, "load", recorded_load)
    _unpicklings.append(unpicklings)
    try:
        yield unpicklings
    finally:
        _unpicklings.remove(unpicklings)
        monkeypatch.setattr(torch, "load", real_load)


def plant(directory, name, payload):
    """Put a pickle into a checkpoint and its checksum into ``state.json``."""
    (directory / name).write_bytes(pickle.dumps(payload))
    state = json.loads((directory / STATE).read_text())
    state["sha256"][name] = sha256(directory / name)
    (directory / STATE).write_text(json.dumps(state))


def test_a_new_checkpoint_never_unpickles_even_a_valid_looking_planted_pickle(
    tmp_path, monkeypatch
):
    marker = tmp_path / "MARKER"
    extra = {"strategy": {"lambda": 0.5}}
    save_checkpoint(tmp_path, 0, weights(0.0), "abc", keep=1, state=extra)
    save_partial(tmp_path, 1, weights(1.0), "abc", train_state_like(), state=extra)
    for directory in (tmp_path / "checkpoints").iterdir():
        plant(directory, "rng.pkl", Planted(marker))
        plant(directory, "train_state.pt", Planted(marker))
    with recording_unpickling(monkeypatch) as unpicklings:
        checkpoint = latest_checkpoint(tmp_path, "abc")
        checkpoint.restore_rng()
        assert checkpoint.state() == extra and checkpoint.weights() is not None
        partial = latest_partial(tmp_path, "abc", 1)
        partial.restore_rng()
        assert partial.state() == extra and partial.train_state()["batches_done"] == 7
    assert unpicklings == []
    assert not marker.exists()
