import json
import os

import pytest
import torch

from xlcl.checkpoint import (
    COMPLETE,
    WEIGHTS,
    CheckpointMismatch,
    latest_checkpoint,
    latest_partial,
    save_checkpoint,
    save_partial,
)


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
