from pathlib import Path

import pytest

from xlcl.config import (
    FULL_EPOCHS,
    FULL_PATIENCE,
    LORA_EPOCHS,
    LORA_PATIENCE,
    ConfigError,
    load_config,
)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(text)
    return path


def test_method_presets_fill_the_papers_epochs_and_patience(tmp_path):
    full = load_config(write(tmp_path, "model: m\nmethod: vanilla\n"))
    assert (full.train.epochs, full.train.patience) == (FULL_EPOCHS, FULL_PATIENCE) == (50, 5)
    lora = load_config(write(tmp_path, "model: m\nmethod: shared-lora\nrank: 32\n"))
    assert (lora.train.epochs, lora.train.patience) == (LORA_EPOCHS, LORA_PATIENCE) == (100, 15)
    # The paper: runs without LoRA used the higher learning rate.
    assert full.train.learning_rate > lora.train.learning_rate


def test_overrides_reach_nested_fields_and_parse_yaml_values(tmp_path):
    config = load_config(
        write(tmp_path, "model: m\nmethod: vanilla\ntrain: {epochs: 3}\n"),
        ["train.epochs=7", "order=[en-US, de-DE]", "data.max_train=100", "rank=null"],
    )
    assert config.train.epochs == 7
    assert config.order == ["en-US", "de-DE"]
    assert config.data.max_train == 100
    assert config.train.patience == FULL_PATIENCE


def test_unknown_key_is_an_error_with_did_you_mean(tmp_path):
    with pytest.raises(
        ConfigError, match=r"unknown key 'train.learning_rat'.*'train.learning_rate'"
    ):
        load_config(write(tmp_path, "model: m\nmethod: vanilla\n"), ["train.learning_rat=1e-4"])
    with pytest.raises(ConfigError, match=r"unknown key 'methd'.*did you mean 'method'"):
        load_config(write(tmp_path, "model: m\nmethd: vanilla\n"))


def test_invalid_values_name_the_field(tmp_path):
    with pytest.raises(ConfigError, match=r"train.batch_size"):
        load_config(write(tmp_path, "model: m\nmethod: vanilla\ntrain: {batch_size: 0}\n"))
    with pytest.raises(ConfigError, match="needs a rank"):
        load_config(write(tmp_path, "model: m\nmethod: shared-lora\n"))
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="expected key=value"):
        load_config(write(tmp_path, "model: m\nmethod: vanilla\n"), ["train.epochs"])


def test_an_empty_config_file_takes_every_field_from_overrides(tmp_path):
    # As before the YAML reader was shared with sweep files: empty is an empty mapping.
    config = load_config(write(tmp_path, ""), ["model=m", "method=vanilla"])
    assert (config.model, config.method) == ("m", "vanilla")
    with pytest.raises(ConfigError, match="expected a mapping at the top level"):
        load_config(write(tmp_path, "- a list\n"))


def test_adapters_together_is_only_for_nonshared_lora(tmp_path):
    together = ["train.adapters_together=true"]
    with pytest.raises(ConfigError, match="needs an independent LoRA method, not shared-lora"):
        load_config(write(tmp_path, "model: m\nmethod: shared-lora\nrank: 8\n"), together)
    nonshared = write(tmp_path, "model: m\nmethod: nonshared-lora\nrank: 8\n")
    assert load_config(nonshared, together).train.adapters_together
    with pytest.raises(ConfigError, match=r"checkpoint\.every_updates is not supported"):
        load_config(nonshared, [*together, "checkpoint.every_updates=10"])
    with pytest.raises(ConfigError, match=r"train\.compile is not supported"):
        load_config(nonshared, [*together, "train.compile=true"])


def test_run_id_is_a_hash_of_the_resolved_config_not_of_the_output_dir(tmp_path):
    path = write(tmp_path, "model: m\nmethod: vanilla\n")
    a = load_config(path)
    b = load_config(path, ["output_dir=elsewhere"])
    c = load_config(path, ["train.seed=1"])
    explicit = load_config(path, [f"train.epochs={FULL_EPOCHS}"])
    assert a.run_id == b.run_id == explicit.run_id
    assert a.run_id != c.run_id
    assert len(a.run_id) == 12


def test_every_shipped_config_is_valid():
    root = Path(__file__).resolve().parents[1] / "configs"
    sweeps = root / "sweeps"
    configs = sorted(p for p in root.rglob("*.yaml") if sweeps not in p.parents)
    assert configs, "configs/ holds the paper's runs"
    for path in configs:
        load_config(path)


VANILLA = "model: m\nmethod: vanilla\n"


def test_a_strategy_is_a_name_plus_its_settings_with_defaults_filled(tmp_path):
    path = write(tmp_path, VANILLA)
    config = load_config(path, ["strategy.name=replay"])
    assert config.strategy == {"name": "replay", "mem_size": 100}
    # Writing a default or not gives the same run.
    explicit = load_config(path, ["strategy.name=replay", "strategy.mem_size=100"])
    assert explicit.run_id == config.run_id
    assert (
        load_config(path, ["strategy.name=replay", "strategy.mem_size=5"]).run_id != config.run_id
    )
    assert load_config(path).strategy is None


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["strategy.name=replai"], "strategy.name: unknown name 'replai'; did you mean 'replay'?"),
        (["strategy.name=no_such_module:Thing"], "strategy.name: cannot import 'no_such_module'"),
        (["strategy.name=json:JSONDecoder"], "strategy.name: 'json:JSONDecoder' is not a subclass"),
        (["strategy.name=json:nothing"], "strategy.name: module 'json' has no attribute"),
        (["strategy.mem_size=3"], "strategy: needs a 'name'"),
        (
            ["strategy.name=replay", "strategy.mem_siz=3"],
            "strategy.mem_siz: unknown setting of replay; did you mean 'strategy.mem_size'?",
        ),
        (["strategy.name=replay", "strategy.mem_size=-1"], "strategy.mem_size: Input should be"),
        (["strategy.name=replay", "method=mono"], "strategy replay is not for the independent"),
        (
            ["strategy.name=xlcl.strategies:Strategy", "train.compile=true"],
            "strategy xlcl.strategies:Strategy does not support train.compile",
        ),
        (["task=massive-slot"], "task: unknown name 'massive-slot'; did you mean 'massive-slots'?"),
    ],
)
def test_bad_strategies_and_tasks_are_one_line_errors_naming_the_key(tmp_path, overrides, message):
    with pytest.raises(ConfigError) as raised:
        load_config(write(tmp_path, VANILLA), overrides)
    assert "\n" not in str(raised.value)
    assert message in str(raised.value)


def test_a_strategy_supports_only_the_features_it_declares(tmp_path):
    path = write(tmp_path, VANILLA)
    # Replay declares in-step checkpoints and compile: each is accepted.
    both = ["strategy.name=replay", "checkpoint.every_updates=5", "train.compile=true"]
    assert load_config(path, both).train.compile
    # The base class declares none.
    plain = ["strategy.name=xlcl.strategies:Strategy"]
    with pytest.raises(ConfigError, match=r"does not support checkpoint\.every_updates"):
        load_config(path, [*plain, "checkpoint.every_updates=5"])
