"""Run ids are users' data: every id that existed before the engine change stays the same.

`golden/run_ids.json` was written from the configs of `configs/paper/` (orders 1-5),
`configs/demo/` and the 80 runs of `configs/sweeps/paper.yaml` before strategies and tasks
existed. A new config key at its default must not enter the hash.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from xlcl.config import config_diff, load_config
from xlcl.sweep.spec import load_sweep

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = json.loads((Path(__file__).parent / "golden" / "run_ids.json").read_text())


def current_ids() -> dict[str, str]:
    ids = {}
    for path in sorted((ROOT / "configs" / "paper").glob("*.yaml")):
        for order in range(1, 6):
            key = f"{path.relative_to(ROOT)} order={order}"
            ids[key] = load_config(path, [f"order={order}"]).run_id
    for path in sorted((ROOT / "configs" / "demo").rglob("*.yaml")):
        ids[str(path.relative_to(ROOT))] = load_config(path).run_id
    sweep = load_sweep(ROOT / "configs" / "sweeps" / "paper.yaml", results="results/paper")
    for config in sweep.runs:
        key = (
            f"configs/sweeps/paper.yaml {config.model} {config.method} "
            f"rank={config.rank} order={config.order}"
        )
        ids[key] = config.run_id
    return ids


def test_every_run_id_of_the_shipped_configs_is_unchanged():
    current = current_ids()
    assert len(GOLDEN) == 146
    changed = {
        key: (GOLDEN[key], current.get(key)) for key in GOLDEN if current.get(key) != GOLDEN[key]
    }
    assert not changed, changed


@pytest.mark.parametrize(
    "override",
    ["task=massive-slots", "strategy=null"],
)
def test_new_keys_at_their_defaults_do_not_enter_the_hash(override):
    path = ROOT / "configs" / "paper" / "vanilla.yaml"
    assert load_config(path, [override]).run_id == GOLDEN["configs/paper/vanilla.yaml order=1"]


@pytest.mark.parametrize(
    "override",
    [
        "tracking=[tensorboard, mlflow, wandb]",
        "tracking={mlflow: {uri: 'file:///elsewhere'}, wandb: {mode: online}, group: other}",
        "tracking.group=a-sweep",
    ],
)
def test_tracking_changes_no_run_id(override):
    path = ROOT / "configs" / "paper" / "vanilla.yaml"
    tracked = load_config(path, [override])
    assert tracked.tracking.enabled or tracked.tracking.group
    assert tracked.run_id == GOLDEN["configs/paper/vanilla.yaml order=1"]


def test_a_resume_accepts_a_config_that_differs_only_in_tracking():
    path = ROOT / "configs" / "paper" / "vanilla.yaml"
    plain = load_config(path)
    assert config_diff(plain, load_config(path, ["tracking=[tensorboard, wandb]"])) == []
    assert config_diff(plain, load_config(path, ["train.seed=7"])) == ["train.seed: 42 -> 7"]
