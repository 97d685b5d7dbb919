"""Config: defaults, YAML, overrides, and errors that name the key."""

import pytest

from hpc_fedprune.config import describe_keys, load_config, to_yaml
from hpc_fedprune.config.load import cohort_size
from hpc_fedprune.errors import InputError


def test_defaults_are_the_quick_start():
    config = load_config()
    assert config.algorithm.name == "fedavg"
    assert config.federation.rounds >= 1
    assert cohort_size(config) <= config.partition.num_clients


def test_overrides_parse_as_yaml_and_nest():
    config = load_config(
        None,
        [
            "federation.rounds=7",
            "training.lr=0.5",
            "model.mlp.hidden=[64, 32]",
            "algorithm.fedprox.mu=0.1",
        ],
    )
    assert config.federation.rounds == 7
    assert config.training.lr == 0.5
    assert config.model.mlp.hidden == (64, 32)
    assert config.algorithm.fedprox.mu == 0.1


def test_yaml_file_then_overrides_win(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("federation:\n  rounds: 3\ntraining:\n  lr: 0.1\n")
    config = load_config(path, ["training.lr=0.2"])
    assert config.federation.rounds == 3 and config.training.lr == 0.2


def test_resolved_yaml_round_trips(tmp_path):
    config = load_config(None, ["partition.scheme=shards", "data.shape=[3, 8, 8]"])
    path = tmp_path / "resolved.yaml"
    path.write_text(to_yaml(config))
    assert load_config(path) == config


@pytest.mark.parametrize(
    "override, fragment",
    [
        (
            "federation.round=3",
            "unknown config key 'federation.round'; did you mean 'federation.rounds'?",
        ),
        ("federaton.rounds=3", "did you mean 'federation'?"),
        ("training.lr=abc", "training.lr: expected a number"),
        ("training.lr=-1", "training.lr: -1.0 is out of range (expected > 0.0)"),
        ("federation.rounds=2.5", "federation.rounds: expected an integer"),
        ("training.optimizer=adm", "did you mean 'adam'?"),
        ("output.progress=maybe", "expected true or false"),
        ("federation.clients_per_round=500", "larger than partition.num_clients"),
        ("rounds", "not of the form key.sub=value"),
        ("federation=3", "federation: expected a section"),
    ],
)
def test_errors_name_the_key(override, fragment):
    with pytest.raises(InputError) as info:
        load_config(None, [override])
    message = str(info.value)
    assert fragment in message
    assert "\n" not in message


def test_bad_yaml_reports_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("federation:\n  rounds: [1,\n")
    with pytest.raises(InputError, match="line"):
        load_config(path)


def test_missing_file_and_non_mapping(tmp_path):
    with pytest.raises(InputError, match="cannot read config file"):
        load_config(tmp_path / "nope.yaml")
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(InputError, match="expected a mapping"):
        load_config(path)


def test_every_key_is_documented():
    rows = describe_keys()
    assert len(rows) > 40
    assert all(text for _, _, text in rows)
    assert ("federation.rounds", load_config().federation.rounds) in [(k, d) for k, d, _ in rows]


def test_exponent_without_decimal_point_is_a_number():
    assert load_config(None, ["training.weight_decay=5e-4"]).training.weight_decay == 5e-4
