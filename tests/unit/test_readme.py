"""The README documents every config key with its current default."""

import subprocess
import sys

from tests.helpers import REPO


def test_readme_config_table_is_current():
    table = subprocess.run(
        [sys.executable, "-m", "hpc_fedprune", "config", "keys", "--markdown"],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    ).stdout.strip()
    text = (REPO / "README.md").read_text()
    stale = [row for row in table.splitlines() if row not in text]
    assert not stale, (
        "README's config table is stale; regenerate it with "
        "`python -m hpc_fedprune config keys --markdown`. Rows missing or changed:\n"
        + "\n".join(stale)
    )


def test_readme_starts_with_the_two_commands():
    head = (REPO / "README.md").read_text().splitlines()[:6]
    assert any(line.startswith("make demo") for line in head)
    assert any(line.startswith("make test") for line in head)
