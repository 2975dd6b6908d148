"""Integration: on real MASSIVE, experience replay forgets less than VANILLA.

The quick demo's VANILLA run (e5-small, en-US -> ru-RU -> th-TH, 600 training utterances
a locale) against the same config with ``strategy: {name: replay, mem_size: 200}``,
settings fixed before the run. Measured on a 2-core CPU: VANILLA CBT -0.198 (final F1
0.607), replay CBT +0.044 (final F1 0.777); the test asserts the sign of the gap.
"""

from __future__ import annotations

import pytest

from xlcl.config import load_config
from xlcl.demo import CONFIG_DIR, METHODS, QUICK
from xlcl.metrics import cbt, read_run_dir
from xlcl.protocol import run

pytestmark = pytest.mark.integration


def test_replay_forgets_less_than_vanilla_on_real_massive(quick_demo, massive_archive, tmp_path):
    vanilla_dir = dict(zip(METHODS, quick_demo.run_dirs, strict=True))["vanilla"]
    config = load_config(
        CONFIG_DIR / QUICK / "vanilla.yaml",
        [
            f"data.source={massive_archive}",
            f"output_dir={tmp_path}",
            "strategy.name=replay",
            "strategy.mem_size=200",
        ],
    )
    replay = read_run_dir(run(config)).matrix
    vanilla = read_run_dir(vanilla_dir).matrix
    assert vanilla.order == replay.order
    assert cbt(vanilla) < 0, "VANILLA should forget on this order"
    assert cbt(replay) > cbt(vanilla), (cbt(replay), cbt(vanilla))
