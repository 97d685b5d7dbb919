"""Shared pieces of the end-to-end tests: a tiny config and run-file readers."""

from __future__ import annotations

import subprocess
import sys

import h5py
import numpy as np

import hpc_fedprune
from hpc_fedprune.analysis import Run, load_run
from tests.helpers import REPO, child_env

# Small enough for a few seconds per run on one core, big enough to learn something.
TINY = [
    "data.num_train=400",
    "data.num_test=200",
    "data.shape=[1, 12, 12]",
    "model.name=mlp",
    "model.mlp.hidden=[32]",
    "partition.num_clients=8",
    "partition.min_size=5",
    "federation.clients_per_round=5",
    "federation.rounds=3",
    "training.batch_size=16",
    "training.lr=0.1",
    "training.local_epochs=1",
    "runtime.seed=3",
]

# Metrics that legitimately depend on the world size or the clock.
WORLD_DEPENDENT = {"wall_s", "mpi_bytes"}


def read_run(path) -> dict:
    """Model bytes, metrics (per-layer ones included) and root attributes of a run file.

    Read through `load_run`, except the per-layer metrics, which it does not expose.
    """
    run = load_run(path)
    model = run.final_model()
    with h5py.File(path, "r") as f:
        layers = f["metrics_layers"] if "metrics_layers" in f else {}
        per_layer = {k: layers[k][...] for k in layers}
    return {
        "flat": None if model is None else model[0].tobytes(),
        "metrics": run.metrics,
        "layers": per_layer,
        "attrs": run.attrs,
    }


def assert_same_results(a: dict, b: dict) -> None:
    """Bit-identical model and metrics (except world-dependent ones)."""
    assert a["flat"] == b["flat"], "global models differ"
    assert set(a["metrics"]) == set(b["metrics"])
    for name in a["metrics"]:
        if name in WORLD_DEPENDENT:
            continue
        x, y = a["metrics"][name], b["metrics"][name]
        assert np.array_equal(x, y, equal_nan=True), f"metric {name} differs: {x} vs {y}"
    assert set(a.get("layers", {})) == set(b.get("layers", {}))
    for name, x in a.get("layers", {}).items():
        assert np.array_equal(x, b["layers"][name]), f"per-layer metric {name} differs"


def api_run(out, *overrides: str, config: str | None = None) -> Run:
    """A run through the Python API in this process; its run file, read by `load_run`.

    For tests of what a run computes: torch is imported once for the whole session instead
    of once per launch. What the command line itself owns (exit statuses, messages,
    signals to a process) is tested with `cli`. ``config`` names a file under ``configs/``.
    """
    path = None if config is None else REPO / "configs" / config
    outcome = hpc_fedprune.run(path, out=out, overrides=list(overrides))
    assert outcome.rounds > 0 and not outcome.stopped
    return outcome.load()


def cli(*args, timeout=200) -> subprocess.CompletedProcess:
    """``python -m hpc_fedprune ARGS`` in one process, as a user types it."""
    return subprocess.run(
        [sys.executable, "-m", "hpc_fedprune", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=child_env(),
        cwd=REPO,
    )
