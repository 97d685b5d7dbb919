"""The checkpoint digest: a function of the whole file (attributes and layout included)."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from hpc_fedprune.errors import InputError
from hpc_fedprune.store.checkpoint import (
    Checkpoint,
    _digest,
    latest_checkpoint,
    read_checkpoint,
    write_checkpoint,
)


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


# --- the digest covers every attribute and the layout, not only the datasets ----------


def _checkpointed(tmp_path):
    """A run.h5 with attributes, a group and datasets, and a checkpoint of it."""
    out = tmp_path / "run"
    out.mkdir()
    with h5py.File(out / "run.h5", "w") as f:
        f.attrs["rounds_done"] = 7
        f.attrs["config"] = "training:\n  lr: 0.1\n"
        m = f.create_group("metrics")
        m.create_dataset("round", data=np.arange(1, 8), maxshape=(None,), chunks=(256,))
        f.create_dataset("masks/fc.weight", data=np.zeros((2, 3), np.uint8))
        f["masks/fc.weight"].attrs["numel"] = 20
    clients = {"mask": {1: np.arange(20) % 3 == 0}}
    state = Checkpoint(7, np.arange(4, dtype=np.float32), None, {"momentum": np.ones(4)}, clients)
    return write_checkpoint(out, state)


def _set_attr(name, key, value):
    return lambda f: f[name].attrs.__setitem__(key, value)


TAMPERING = {
    "the checkpoint's round": _set_attr("checkpoint", "round", 5),
    "a root attribute": lambda f: f.attrs.__setitem__("rounds_done", 5),
    "the config text": lambda f: f.attrs.__setitem__("config", "training:\n  lr: 0.5\n"),
    "a dataset's attribute": _set_attr("checkpoint/clients/mask", "bool_length", 21),
    "a new attribute": _set_attr("checkpoint/run", "note", 1),
    "a new empty group": lambda f: f.create_group("extra"),
    "a renamed dataset": lambda f: f.move("checkpoint/run/rows", "checkpoint/run/row"),
    "a recorded row count": lambda f: f["checkpoint/run/rows"].__setitem__(0, 6),
    "a client's state": lambda f: f["checkpoint/clients/mask"].__setitem__((0, 0), 0),
    "a reinterpreted dtype": lambda f: (
        f["checkpoint/algorithm"].__delitem__("momentum"),
        f["checkpoint/algorithm"].create_dataset("momentum", data=np.ones(4).view(np.int64)),
    ),
}


def test_an_untouched_checkpoint_verifies(tmp_path):
    assert read_checkpoint(_checkpointed(tmp_path)).round == 7


@pytest.mark.parametrize("what", list(TAMPERING))
def test_any_change_is_a_mismatch(tmp_path, what):
    path = _checkpointed(tmp_path)
    with h5py.File(path, "a") as f:
        TAMPERING[what](f)
    with pytest.raises(ValueError, match="checksum mismatch"):
        read_checkpoint(path)


def test_a_tampered_newest_checkpoint_falls_back_to_the_previous(tmp_path, capsys):
    path = _checkpointed(tmp_path)
    write_checkpoint(path.parent, Checkpoint(9, np.zeros(4, np.float32), None, {}))
    with h5py.File(path, "a") as f:  # checkpoint.h5 is now round 9's
        f["checkpoint"].attrs["round"] = 8
    assert latest_checkpoint(path.parent).round == 7
    assert "damaged" in capsys.readouterr().err
    with h5py.File(path.parent / "checkpoint.prev.h5", "a") as f:
        f["checkpoint"].attrs["round"] = 6
    with pytest.raises(InputError, match="no intact checkpoint"):
        latest_checkpoint(path.parent)


def test_a_checkpoint_without_the_digest_version_is_not_trusted(tmp_path):
    path = _checkpointed(tmp_path)
    with h5py.File(path, "a") as f:
        del f["checkpoint"].attrs["digest_version"]
    with pytest.raises(ValueError, match="digest version 1"):
        read_checkpoint(path)
