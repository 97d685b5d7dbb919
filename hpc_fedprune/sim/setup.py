"""Everything a run builds before its first round, the same on every rank.

Data, partition, model and algorithm are pure functions of the config, so every rank
builds them itself instead of receiving them: no broadcast of data, and a rank that
fails to build them reports an input error that all ranks agree on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..algorithms import make_algorithm
from ..config import Config, cohort_size
from ..data import Dataset, load_dataset, partition, partition_stats, split_local_test
from ..errors import InputError
from ..models import FlatModel, build_model
from ..pruning import prunable_mask


@dataclass
class Setup:
    """The built pieces of a run on one rank."""

    dataset: Dataset
    train_parts: list[np.ndarray]
    test_parts: list[np.ndarray] | None
    sizes: np.ndarray
    stats: dict[str, np.ndarray]
    model: FlatModel
    algorithm: object
    device: str
    cohort_size: int


def data_options(config: Config) -> dict:
    """Loader keyword arguments from the data section."""
    d = config.data
    if d.name == "synthetic" or d.name == "synthetic_volumes":
        return {"num_train": d.num_train, "num_test": d.num_test, "num_classes": d.num_classes,
                "shape": tuple(d.shape), "noise": d.noise} if d.name == "synthetic" else {
                "num_train": d.num_train, "num_test": d.num_test,
                **({"shape": tuple(d.shape)} if len(d.shape) == 4 else {})}
    if d.name in ("npz", "hdf5"):
        return {"path": d.path, "test_fraction": d.test_fraction}
    return {}


def partition_options(config: Config) -> dict:
    """Partitioner keyword arguments for the chosen scheme."""
    p = config.partition
    return {
        "dirichlet": {"alpha": p.alpha, "min_size": p.min_size, "bins": p.bins},
        "shards": {"classes_per_client": p.classes_per_client, "bins": p.bins},
        "quantity_skew": {"power": p.power, "sizes": p.sizes},
        "iid_balanced": {"bins": p.bins},
        "iid": {},
    }[p.scheme]


def build_setup(config: Config, world_size: int, device: str) -> Setup:
    """Build data, partition, model and algorithm for a run (raises InputError on bad input)."""
    seed = config.runtime.seed
    dataset = load_dataset(config.data.name, root=config.data.root, seed=seed, **data_options(config))
    num_clients = config.partition.num_clients
    if world_size > num_clients:
        raise InputError(
            f"{world_size} ranks for {num_clients} clients: use at most as many ranks as clients"
        )
    parts = partition(dataset.y_train, num_clients, config.partition.scheme, seed=seed, **partition_options(config))
    test_parts = None
    if config.partition.local_test_fraction > 0:
        parts, test_parts = split_local_test(parts, config.partition.local_test_fraction, seed=seed)
    sizes = np.array([len(p) for p in parts], dtype=np.int64)
    if (sizes == 0).any():
        raise InputError(
            f"{int((sizes == 0).sum())} clients received no training samples; use fewer clients or more data"
        )
    stats = partition_stats(dataset.y_train, parts, max(dataset.num_classes, 0), bins=config.partition.bins)
    module = build_model(
        config.model.name,
        dataset.input_shape,
        dataset.num_classes,
        seed=seed,
        hidden=tuple(config.model.hidden),
        norm=config.model.norm,
        width=config.model.width,
    )
    model = FlatModel(module.to(device), device=device)
    preset = getattr(getattr(config.algorithm, config.algorithm.name, None), "prunable", "all_trainable")
    prunable = prunable_mask(model, preset)
    algorithm = make_algorithm(config, prunable.to(device), model.trainable_mask().to(device))
    return Setup(dataset, parts, test_parts, sizes, stats, model, algorithm, device, cohort_size(config))


def to_device(array: np.ndarray, device: str) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array)).to(device)
