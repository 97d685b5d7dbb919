"""The ``/exploration`` group of the run file: what an exploration phase found and cost."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np


def write_exploration(path: Path, record: dict) -> None:
    """Rank 0: write ``record`` (``datasets`` and ``attrs``) as ``/exploration`` of ``path``.

    Parameters
    ----------
    path : Path
        The run file (already created).
    record : dict
        ``{"datasets": {name: array}, "attrs": {name: value}}``; replaces any earlier group.
    """
    with h5py.File(path, "a") as f:
        if "exploration" in f:
            del f["exploration"]
        group = f.create_group("exploration")
        for name, values in record["datasets"].items():
            group.create_dataset(name, data=np.asarray(values), compression="gzip")
        for name, value in record["attrs"].items():
            group.attrs[name] = value
