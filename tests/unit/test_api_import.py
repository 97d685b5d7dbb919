"""`import hpc_fedprune` stays light: the API's names load what they need on first use."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.helpers import REPO, child_env

HEAVY = ("torch", "mpi4py", "h5py")


def imported_after(code: str) -> set[str]:
    """Which of `HEAVY` a fresh interpreter has imported after running ``code``."""
    probe = f"{code}\nimport sys\nprint(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    done = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        check=True,
        env=child_env(),
        cwd=REPO,
    )
    return set(done.stdout.split())


@pytest.mark.timeout(120)
def test_the_package_and_its_api_names_import_nothing_heavy() -> None:
    # `run` and `RunOutcome` are reachable without torch or MPI; only a run brings them in.
    code = "import hpc_fedprune\nfrom hpc_fedprune import InputError, RunOutcome, run"
    assert imported_after(code) == set()
    # The analysis reader needs h5py, never torch or MPI.
    assert imported_after("from hpc_fedprune import load_run") == {"h5py"}


def test_unknown_names_are_still_attribute_errors() -> None:
    import hpc_fedprune

    with pytest.raises(AttributeError, match="no attribute 'frobnicate'"):
        hpc_fedprune.frobnicate  # noqa: B018
    assert {"run", "RunOutcome", "load_run", "InputError"} <= set(dir(hpc_fedprune))
