"""Config: defaults, YAML, --set overrides, and every error path as one line naming the key."""

from pathlib import Path

import pytest
import yaml

from catdog.config import Config, ConfigError, load_config, save_config, validate


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_defaults_need_no_file() -> None:
    config = load_config(None)
    assert config == Config()
    assert config.model.hidden == [512, 128]
    assert config.loss == "mse"
    assert config.optimizer.name == "sgd" and config.optimizer.lr == 0.01
    assert config.train.batch_size == 64


def test_a_file_names_only_what_it_changes(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "optimizer:\n  lr: 0.2\ntrain:\n  batch_size: full\n"))
    assert config.optimizer.lr == 0.2
    assert config.train.batch_size == "full"
    assert config.train.epochs == Config().train.epochs


def test_scientific_notation_is_a_number(tmp_path: Path) -> None:
    # Plain YAML 1.1 would read 1e-3 as the string "1e-3".
    assert load_config(write(tmp_path, "optimizer:\n  lr: 1e-3\n")).optimizer.lr == pytest.approx(
        1e-3
    )


def test_overrides_are_yaml_typed_and_repeat(tmp_path: Path) -> None:
    config = load_config(
        write(tmp_path, "train:\n  epochs: 5\n"),
        ["optimizer.lr=0.05", "train.epochs=3", "model.hidden=[64, 32]", "data.grayscale=true"],
    )
    assert config.optimizer.lr == 0.05
    assert config.train.epochs == 3
    assert config.model.hidden == [64, 32]
    assert config.data.grayscale is True


def test_optimizer_hyperparameters_pass_through(tmp_path: Path) -> None:
    config = load_config(
        None, ["optimizer.name=momentum", "optimizer.beta=0.8", "optimizer.formulation=classic"]
    )
    assert config.optimizer.hyperparameters == {"beta": 0.8, "formulation": "classic", "lr": 0.01}


def test_resolved_config_round_trips(tmp_path: Path) -> None:
    config = load_config(None, ["optimizer.name=adam", "optimizer.betas=[0.8, 0.99]", "seed=7"])
    save_config(config, tmp_path / "resolved.yaml")
    assert load_config(tmp_path / "resolved.yaml") == config
    assert yaml.safe_load((tmp_path / "resolved.yaml").read_text())["seed"] == 7


ERRORS = [
    # (file text, overrides, words the one-line message must contain)
    ("optimizer:\n  lrr: 0.1\n", [], ["optimizer.lrr", "did you mean 'optimizer.lr'"]),
    ("trian:\n  epochs: 3\n", [], ["trian", "unknown key", "did you mean 'train'"]),
    ("model:\n  hiden: [3]\n", [], ["model.hiden", "did you mean 'model.hidden'"]),
    ("train:\n  epochs: three\n", [], ["train.epochs", "integer"]),
    ("train:\n  epochs: 0\n", [], ["train.epochs", "greater than or equal to 1"]),
    ("train:\n  batch_size: 0\n", [], ["train.batch_size"]),
    ("train:\n  batch_size: half\n", [], ["train.batch_size"]),
    ("data:\n  val_fraction: 1.5\n", [], ["data.val_fraction", "less than 1"]),
    ("data:\n  grayscale: 1\n", [], ["data.grayscale", "boolean"]),
    ("", ["data.augment.mixup=-0.2"], ["data.augment.mixup", "greater than or equal to 0"]),
    ("model:\n  hidden: [64, -1]\n", [], ["model.hidden", "positive"]),
    ("loss: hinge\n", [], ["loss", "'mse' or 'bce'"]),
    ("device: gpu\n", [], ["device", "auto, cpu, cuda"]),
    (
        "optimizer:\n  name: adamw\n",
        [],
        ["optimizer.name", "unknown optimizer 'adamw'", "did you mean 'adam'"],
    ),
    ("optimizer:\n  lr: -1\n", [], ["optimizer.lr", "greater than 0"]),
    (
        "optimizer:\n  name: sgd\n  beta: 0.9\n",
        [],
        ["optimizer.beta", "not taken by optimizer 'sgd'"],
    ),
    ("optimizer:\n  name: momentum\n  beta: 1.5\n", [], ["optimizer", "1.5"]),
    ("optimizer:\n  name: momentum\n  formulation: ng\n", [], ["optimizer", "ng"]),
    ("seed: 1\ntrain: {epochs: 2\n", [], ["line 3, column 1", "invalid YAML"]),
    ("- just\n- a list\n", [], ["mapping"]),
    ("", ["optimizer.lr"], ["--set", "KEY=VALUE"]),
    ("optimizer:\n  lr: 0.1\n", ["optimizer.lr.x=1"], ["optimizer.lr is not a section"]),
    ("", ["optimizer.lr.x=1"], ["optimizer.lr", "valid number"]),
    ("", ["train.epochs=[1"], ["--set train.epochs", "invalid YAML"]),
]


@pytest.mark.parametrize(("text", "overrides", "words"), ERRORS)
def test_errors_are_one_line_naming_the_key(
    tmp_path: Path, text: str, overrides: list[str], words: list[str]
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text), overrides)
    message = str(caught.value)
    assert "\n" not in message
    for word in words:
        assert word in message


def test_missing_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.yaml: config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_validate_names_its_source() -> None:
    with pytest.raises(ConfigError, match=r"^runs/x/last\.pt: seed"):
        validate({"seed": "x"}, source="runs/x/last.pt")


def test_a_whole_config_check_names_the_key_once() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(None, ["optimizer.name=genetic", "optimizer.lr=0.1"])
    # The value came from an override: the message blames --set, not the (default) config.
    assert str(caught.value).startswith("--set optimizer.lr: not taken by optimizer 'genetic'")


def test_a_genetic_config_round_trips_without_a_learning_rate(tmp_path: Path) -> None:
    # The genetic algorithm takes no lr: the saved config must not name one, or resuming fails.
    config = load_config(None, ["optimizer.name=genetic", "optimizer.population=8"])
    save_config(config, tmp_path / "resolved.yaml")
    assert "lr" not in yaml.safe_load((tmp_path / "resolved.yaml").read_text())["optimizer"]
    assert load_config(tmp_path / "resolved.yaml") == config


def test_the_optimizer_keys_and_values_are_checked_without_building_one() -> None:
    with pytest.raises(ConfigError, match=r"optimizer\.beta: not taken by optimizer 'sgd'"):
        validate({"optimizer": {"name": "sgd", "beta": 0.9}})
    with pytest.raises(ConfigError, match=r"optimizer \(momentum\): .*1\.5"):
        validate({"optimizer": {"name": "momentum", "beta": 1.5}})
    with pytest.raises(ConfigError, match=r"optimizer \(genetic\): .*population"):
        validate({"optimizer": {"name": "genetic", "population": 1}})
    # A default the config leaves out is checked too: classic momentum with its default beta.
    assert validate({"optimizer": {"name": "momentum", "formulation": "classic"}})
