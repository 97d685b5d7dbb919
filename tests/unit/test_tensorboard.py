"""TensorBoard logging: the event file read back with TensorBoard's own reader."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from hpc_fedprune.config import load_config
from hpc_fedprune.errors import InputError

pytest.importorskip("tensorboard")


def _read_back(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar series in a run's tensorboard folder, as TensorBoard shows it."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_rounds_read_back_as_scalars(tmp_path: Path) -> None:
    from hpc_fedprune.store.tensorboard import FOLDER, close_logs, log_round

    log_round(tmp_path, 1, {"round": 1, "test_accuracy": np.nan, "bytes_up": 1000, "sparsity": 0.0})
    log_round(tmp_path, 2, {"round": 2, "test_accuracy": 0.5, "bytes_up": 800, "sparsity": 0.25})
    scalars = _read_back(tmp_path / FOLDER)
    close_logs()
    assert set(scalars) == {"test_accuracy", "bytes_up", "sparsity"}  # `round` is the step
    assert scalars["bytes_up"] == [(1, 1000.0), (2, 800.0)]
    assert scalars["sparsity"] == [(1, 0.0), (2, 0.25)]
    assert scalars["test_accuracy"] == [(2, 0.5)]  # not evaluated in round 1: no point


def test_a_resumed_run_shows_each_round_once(tmp_path: Path) -> None:
    from hpc_fedprune.store.tensorboard import FOLDER, ScalarLog

    first = ScalarLog(tmp_path)
    for rnd in (1, 2, 3):  # the checkpoint was after round 2; round 3 was lost in a crash
        first.write(rnd, {"train_loss": float(rnd)})
    first.close()
    second = ScalarLog(tmp_path, first_round=3)  # the resume redoes round 3
    for rnd in (3, 4):
        second.write(rnd, {"train_loss": 10.0 * rnd})
    second.close()
    assert _read_back(tmp_path / FOLDER)["train_loss"] == [
        (1, 1.0),
        (2, 2.0),
        (3, 30.0),
        (4, 40.0),
    ]


def test_missing_package_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "tensorboard" else real(name, *a),
    )
    with pytest.raises(InputError, match=r"output.tensorboard: .*hpc_fedprune\[tensorboard\]"):
        load_config(None, ["output.tensorboard=true"])
    assert not load_config().output.tensorboard  # off by default: never needed
