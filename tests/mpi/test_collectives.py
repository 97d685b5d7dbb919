"""Sparse collectives under mpiexec at 1-4 ranks: one launch per rank count runs every check.

The checks themselves (each method against a numpy reference sum, whole-buffer user op,
broadcast of model and mask) live in ``collectives_check.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import run_mpi

SCRIPT = Path(__file__).with_name("collectives_check.py")


@pytest.mark.mpi
@pytest.mark.timeout(90)
@pytest.mark.parametrize("nprocs", [1, 2, 3, 4])
def test_collectives_match_numpy_reference(nprocs):
    proc = run_mpi(nprocs, ["-m", "mpi4py", str(SCRIPT)], timeout=80)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "CHECKS_OK" in proc.stdout, proc.stdout[-3000:]
