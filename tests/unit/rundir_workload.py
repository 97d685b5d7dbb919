"""A run directory written round by round without a simulation, for the storage tests.

`write_run` drives `RunDir` exactly as the round loop does (create, a record per round
with metrics, client uplinks and masks, the global mask, attack rows now and then, a
checkpoint every few rounds, the final model) with made-up numbers. Run as a script it
(``OUT ROUNDS CHECKPOINT_EVERY LIMIT...``) writes one run directory per file-size limit, each under
``RLIMIT_FSIZE`` (the soft limit, raised again between runs), and prints one JSON line per
run: the limit, the rounds it recorded and the error that stopped it.
"""

from __future__ import annotations

import json
import resource
import signal
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from hpc_fedprune.config import Config
from hpc_fedprune.errors import StorageError
from hpc_fedprune.store.checkpoint import Checkpoint
from hpc_fedprune.store.rundir import RunDir

LAYOUT = [
    SimpleNamespace(name="fc1.weight", shape=(64, 100), offset=0),
    SimpleNamespace(name="fc1.bias", shape=(64,), offset=6400),
    SimpleNamespace(name="fc2.weight", shape=(10, 64), offset=6464),
]
NUMEL = 6400 + 64 + 640
METRICS = (
    "round",
    "test_accuracy",
    "test_loss",
    "train_loss",
    "sparsity",
    "density",
    "bytes_up",
    "bytes_down",
    "bytes_up_dense_equiv",
    "bytes_up_values_only",
    "mpi_bytes",
    "clients",
    "wall_s",
)


def fake_setup() -> SimpleNamespace:
    """What `RunDir.create` records of a set-up, without torch."""
    return SimpleNamespace(
        dataset=SimpleNamespace(name="synthetic", task="classification", input_shape=(100,)),
        model=SimpleNamespace(layout=LAYOUT),
        algorithm=SimpleNamespace(name="fedsparsify", prunable=np.ones(NUMEL, bool)),
        stats={"sizes": np.arange(1, 9), "label_tv_mean": np.float64(0.3)},
        device="cpu",
        cost=SimpleNamespace(dense_table=_cost_table),  # `ModelCost`'s table, without torch
    )


def _cost_table() -> dict:
    """Dense per-layer cost of the two linear layers of `LAYOUT` (one sample)."""
    return {
        "layer": np.array(["fc1", "fc2"], dtype=object),
        "params": np.array([6464, 650], dtype=np.int64),
        "flops": np.array([12800, 1280], dtype=np.int64),
    }


def masks(rng: np.random.Generator, names=("fc1.weight", "fc2.weight")) -> dict:
    shapes = {t.name: t.shape for t in LAYOUT}
    return {n: rng.random(shapes[n]) < 0.5 for n in names}


def round_record(rnd: int, rng: np.random.Generator):
    """(metrics, clients, global mask, privacy rows) of round ``rnd``."""
    metrics = {name: float(rng.random()) for name in METRICS}
    metrics["round"], metrics["clients"] = rnd, 4
    clients = [
        SimpleNamespace(client=int(c), bytes_up=int(rng.integers(1000, 9000)), mask=masks(rng))
        for c in sorted(rng.choice(8, 4, replace=False))
    ]
    privacy = ()
    if rnd % 7 == 0:
        privacy = [
            {"round": rnd, "attack": name, "auc": 0.5, "members": 10, "nonmembers": 10}
            for name in ("threshold", "shadow")
        ]
    return metrics, clients, masks(rng), privacy


def write_run(out: Path, rounds: int, checkpoint_every: int = 4, on_round=None) -> int:
    """Write a run of ``rounds`` rounds into ``out``; returns the rounds recorded.

    ``on_round(run_dir)`` is called after each recorded round. A `StorageError` is
    raised as the round loop would raise it.
    """
    rng = np.random.default_rng(0)
    run_dir = RunDir(out)
    run_dir.create(Config(), fake_setup(), 1, ["host:cpu"])
    weights = np.zeros(NUMEL, np.float32)
    for rnd in range(1, rounds + 1):
        metrics, clients, mask, privacy = round_record(rnd, rng)
        run_dir.append_round(metrics, clients, mask=mask, privacy=privacy)
        if on_round is not None:
            on_round(run_dir)
        if checkpoint_every and rnd % checkpoint_every == 0:
            state = {"momentum": rng.standard_normal(NUMEL).astype(np.float32)}
            residuals = {c: rng.standard_normal(640).astype(np.float32) for c in range(8)}
            run_dir.write_checkpoint(Checkpoint(rnd, weights, None, state, {"residual": residuals}))
    run_dir.finish(weights, rng.random(NUMEL) < 0.5, wall_s=1.0)
    return rounds


def main(out_root: str, rounds: int, checkpoint_every: int, limits: list[int]) -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
    _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    for limit in limits:
        out = Path(out_root) / str(limit)
        recorded: list[int] = []
        error = None
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
        try:
            write_run(out, rounds, checkpoint_every, on_round=_counter(recorded))
        except StorageError as exc:
            error = str(exc)
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))
        print(json.dumps({"limit": limit, "rounds": len(recorded), "error": error}), flush=True)


def _counter(recorded: list[int]):
    return lambda run_dir: recorded.append(1)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), [int(x) for x in sys.argv[4:]])
