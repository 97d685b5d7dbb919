"""The README documents every config key and every /metrics name."""

from hpc_fedprune.config import describe_keys
from tests.helpers import REPO


def test_every_config_key_is_in_the_readme():
    text = (REPO / "README.md").read_text()
    missing = [key for key, _, _ in describe_keys() if f"`{key}`" not in text]
    assert not missing, f"README lacks config keys: {missing}"


def test_readme_starts_with_the_two_commands():
    head = (REPO / "README.md").read_text().splitlines()[:6]
    assert any(line.startswith("make demo") for line in head)
    assert any(line.startswith("make test") for line in head)
