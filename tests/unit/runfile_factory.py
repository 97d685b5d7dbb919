"""Hand-made run files (format_version 1) with known contents, for the analysis tests.

`write_run` writes the run-file layout of the README with h5py alone, so the analysis is
tested against the contract, not against the simulator's writer. `KNOWN_MASKS` is a mask
history whose statistics are worked out by hand in `KNOWN_ANSWERS`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import h5py
import numpy as np
import yaml


def bits(s: str) -> np.ndarray:
    """``"1010"`` -> boolean array ``[True, False, True, False]``."""
    return np.array([c == "1" for c in s], dtype=bool)


# Two prunable tensors, neither a multiple of 8 bits long, so pad bits are exercised.
# conv1.weight has shape (2, 3, 2): 12 weights, flattened in C order.
KNOWN_SHAPES: dict[str, tuple[int, ...]] = {"conv1.weight": (2, 3, 2), "fc.weight": (5,)}
KNOWN_MASK_ROUNDS = [2, 4, 6, 8]
KNOWN_MASKS: dict[str, list[np.ndarray]] = {
    "conv1.weight": [
        bits("111111111111"),  # round 2: dense
        bits("000011111111"),  # round 4: prune 0-3
        bits("100000111111"),  # round 6: regrow 0, prune 4-5
        bits("100000111111"),  # round 8: unchanged -> stable after round 6
    ],
    "fc.weight": [
        bits("10101"),  # round 2
        bits("10101"),  # round 4: unchanged
        bits("10101"),  # round 6: unchanged
        bits("11100"),  # round 8: prune 4, regrow 1 -> still changing at the last record
    ],
}
KNOWN_ANSWERS = {
    "conv1.weight": {
        "kept": [12, 8, 7, 7],
        "pruned": [None, 4, 2, 0],
        "regrown": [None, 0, 1, 0],
        "hamming": [None, 4, 3, 0],
        "jaccard": [None, 8 / 12, 6 / 9, 1.0],
        "stable_after_round": 6,
        "ever_regrown": 1,  # position 0
        "numel": 12,
    },
    "fc.weight": {
        "kept": [3, 3, 3, 3],
        "pruned": [None, 0, 0, 1],
        "regrown": [None, 0, 0, 1],
        "hamming": [None, 0, 0, 2],
        "jaccard": [None, 1.0, 1.0, 2 / 4],
        "stable_after_round": None,
        "ever_regrown": 1,  # position 1
        "numel": 5,
    },
    "(all)": {
        "kept": [15, 11, 10, 10],
        "pruned": [None, 4, 2, 1],
        "regrown": [None, 0, 1, 1],
        "hamming": [None, 4, 3, 2],
        "jaccard": [None, 11 / 15, 9 / 12, 9 / 11],
        "stable_after_round": None,
        "ever_regrown": 2,
        "numel": 17,
    },
}

# Client-local masks of fc.weight; rows deliberately interleaved between rounds.
KNOWN_CLIENT_ROWS: list[tuple[int, int, dict[str, np.ndarray]]] = [
    (3, 0, {"fc.weight": bits("11100")}),
    (3, 1, {"fc.weight": bits("11010")}),
    (5, 4, {"fc.weight": bits("00000")}),
    (3, 2, {"fc.weight": bits("11100")}),
    (5, 7, {"fc.weight": bits("00000")}),
]
KNOWN_CLIENT_ANSWERS = {
    # Pairs: J(0,1) = 2/4, J(0,2) = 3/3, J(1,2) = 2/4.
    3: {"clients": [0, 1, 2], "mean": 2 / 3, "min": 0.5, "max": 1.0, "kept_by": [1, 1, 1, 2]},
    # Two clients that keep nothing agree completely.
    5: {"clients": [4, 7], "mean": 1.0, "min": 1.0, "max": 1.0, "kept_by": [5, 0, 0]},
}


def _resizable(group: h5py.Group, name: str, data: np.ndarray) -> h5py.Dataset:
    data = np.asarray(data)
    return group.create_dataset(name, data=data, maxshape=(None, *data.shape[1:]), chunks=True)


def _mask_dataset(group: h5py.Group, name: str, shape: tuple[int, ...], rows: Sequence[np.ndarray]):
    numel = math.prod(shape)
    packed = np.stack([np.packbits(np.asarray(r, dtype=bool).ravel()) for r in rows])
    ds = group.create_dataset(
        name,
        data=packed,
        maxshape=(None, packed.shape[1]),
        chunks=(1, packed.shape[1]),
        compression="gzip",
    )
    ds.attrs["shape"] = np.asarray(shape, dtype=np.int64)
    ds.attrs["numel"] = numel
    return ds


def default_metrics(rounds: int, task: str = "classification") -> dict[str, np.ndarray]:
    """Plausible metrics for ``rounds`` rounds: evaluation every other round, sparse traffic."""
    r = np.arange(1, rounds + 1, dtype=np.int64)
    quality = np.where(r % 2 == 0, 0.5 + 0.05 * r, np.nan)
    if task == "regression":
        quality = np.where(r % 2 == 0, 2.0 / r, np.nan)
    dense = np.full(rounds, 4_000_000.0)
    return {
        "round": r,
        "test_accuracy" if task == "classification" else "test_mae": quality,
        "test_loss": 1.0 / r,
        "train_loss": 1.2 / r,
        "sparsity": np.minimum(0.1 * r, 0.8),
        "density": 1 - np.minimum(0.1 * r, 0.8),
        "bytes_up": np.full(rounds, 1_000_000.0),
        "bytes_down": np.full(rounds, 2_000_000.0),
        "bytes_up_dense_equiv": dense,
        "bytes_up_values_only": np.full(rounds, 800_000.0),
        "mpi_bytes": np.full(rounds, 500_000.0),
        "clients": np.full(rounds, 4, dtype=np.int64),
        "wall_s": np.full(rounds, 1.5),
    }


def write_run(
    run_dir: Path,
    *,
    algorithm: str = "fedsparsify",
    task: str = "classification",
    dataset: str = "mnist",
    model: str = "lenet5",
    status: str = "finished",
    rounds_planned: int = 8,
    metrics: Mapping[str, np.ndarray] | None = None,
    masks: Mapping[str, Sequence[np.ndarray]] | None = None,
    mask_shapes: Mapping[str, tuple[int, ...]] | None = None,
    mask_rounds: Sequence[int] | None = None,
    client_rows: Sequence[tuple[int, int, Mapping[str, np.ndarray]]] | None = None,
    format_version: int | None = 1,
    seed: int = 7,
    config: Mapping | None = None,
) -> Path:
    """Write ``run_dir/run.h5`` (plus config.yaml and metrics.jsonl); return ``run_dir``.

    Defaults give a finished 8-round classification run with `KNOWN_MASKS`; pass
    ``masks={}`` for a run without masks and ``format_version=None`` for a file that is
    not a run file. The ``config`` attribute is a resolved config in the simulator's layout
    (``algorithm.name``, ``runtime.seed``, ...); ``config`` adds to it by section.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    m = dict(metrics) if metrics is not None else default_metrics(8, task)
    masks = KNOWN_MASKS if masks is None else masks
    shapes = dict(KNOWN_SHAPES if mask_shapes is None else mask_shapes)
    mask_rounds = KNOWN_MASK_ROUNDS if mask_rounds is None else mask_rounds
    n_rounds = len(m["round"])
    tree: dict = {
        "data": {"name": dataset},
        "model": {"name": model},
        "federation": {"rounds": rounds_planned},
        "algorithm": {"name": algorithm},
        "output": {"dir": str(run_dir)},
        "runtime": {"seed": seed},
    }
    for section, values in (config or {}).items():
        tree.setdefault(section, {}).update(values)
    config_text = yaml.safe_dump(tree, sort_keys=False)
    with h5py.File(run_dir / "run.h5", "w") as f:
        if format_version is not None:
            f.attrs["format_version"] = format_version
        f.attrs.update(
            {
                "hpc_fedprune_version": "0.1.0",
                "config": config_text,
                "seed": seed,
                "world_size": 2,
                "algorithm": algorithm,
                "created": "2025-01-02T03:04:05Z",
                "dataset": dataset,
                "model": model,
                "task": task,
                "num_clients": 10,
                "rounds_planned": rounds_planned,
                "rounds_done": n_rounds,
                "status": status,
            }
        )
        g = f.create_group("metrics")
        for k, v in m.items():
            _resizable(g, k, np.asarray(v))
        names = list(shapes)
        sizes = [math.prod(shapes[n]) for n in names]
        flat = f.create_dataset("model/flat", data=np.zeros(sum(sizes), dtype=np.float32))
        flat.attrs["names"] = np.array(names, dtype=h5py.string_dtype())
        flat.attrs["shapes"] = json.dumps([list(shapes[n]) for n in names])
        flat.attrs["offsets"] = np.cumsum([0, *sizes[:-1]]).astype(np.int64)
        if masks:
            final = np.concatenate([np.asarray(masks[n][-1]).ravel() for n in names])
            mask_ds = f.create_dataset("model/mask", data=np.packbits(final))
            mask_ds.attrs["numel"] = final.size
            mg = f.create_group("masks")
            _resizable(mg, "rounds", np.asarray(mask_rounds, dtype=np.int64))
            for name, rows in masks.items():
                _mask_dataset(mg, name, shapes[name], rows)
        if client_rows:
            cg = f.create_group("clients/masks")
            _resizable(cg, "round", np.array([r for r, _, _ in client_rows], dtype=np.int64))
            _resizable(cg, "client", np.array([c for _, c, _ in client_rows], dtype=np.int64))
            for name in client_rows[0][2]:
                _mask_dataset(cg, name, shapes[name], [row[name] for _, _, row in client_rows])
        up = f.create_group("clients/uplink")
        _resizable(up, "round", np.repeat(np.arange(1, n_rounds + 1), 2))
        _resizable(up, "client", np.tile([0, 1], n_rounds))
        _resizable(up, "bytes", np.full(2 * n_rounds, 500_000, dtype=np.int64))
        f.create_dataset("partition/sizes", data=np.arange(10, 20, dtype=np.int64))
        f.create_dataset("partition/label_counts", data=np.ones((10, 3), dtype=np.int64))
    (run_dir / "config.yaml").write_text(config_text)
    with open(run_dir / "metrics.jsonl", "w") as out:
        for i in range(n_rounds):
            row = {k: np.asarray(v)[i].item() for k, v in m.items()}
            out.write(json.dumps(row) + "\n")
    return run_dir


def append_rows(path: Path, dataset: str, rows: np.ndarray) -> None:
    """Grow one dataset of an existing file by ``rows``, as a crash mid-round would leave it."""
    with h5py.File(path, "a") as f:
        ds = f[dataset]
        rows = np.asarray(rows, dtype=ds.dtype)
        n = ds.shape[0]
        ds.resize(n + rows.shape[0], axis=0)
        ds[n:] = rows
