"""A whole run inside the test process (one rank), for tests that check a rule end to end."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from hpc_fedprune.cli import main


def run_inprocess(out: Path, *overrides: str) -> dict:
    """``run --out OUT overrides`` on one rank in this process; the run file's contents.

    Returns ``flat`` (the final float32 model), ``metrics`` (name -> array) and ``masks``
    (the ``/masks`` rounds, or an empty array).
    """
    code = main(["run", "--out", str(out), *overrides, "output.progress=false"])
    assert code == 0, f"run exited {code}"
    with h5py.File(out / "run.h5", "r") as f:
        return {
            "flat": f["model/flat"][...],
            "metrics": {k: f["metrics"][k][...] for k in f["metrics"]},
            "masks": f["masks/rounds"][...] if "masks" in f else np.zeros(0, np.int64),
        }
