"""The checkpoint digest is a function of the contents, whatever the dataset types."""

from __future__ import annotations

import h5py
import numpy as np

from hpc_fedprune.store.checkpoint import _digest


def test_variable_length_strings_hash_by_text(tmp_path):
    path = tmp_path / "a.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("names", data=["threshold", "shadow"], dtype=h5py.string_dtype())
        f.create_dataset("values", data=np.arange(4.0))
    with h5py.File(path, "r") as f:
        first = _digest(f)
    with h5py.File(path, "r") as f:
        assert _digest(f) == first  # object arrays would hash their pointers
    with h5py.File(path, "a") as f:
        f["names"][0] = "loss"
    with h5py.File(path, "r") as f:
        assert _digest(f) != first
