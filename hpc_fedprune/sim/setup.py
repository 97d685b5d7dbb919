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
from ..data import (
    Dataset,
    as_labels,
    dataset_options,
    load_dataset,
    partition,
    partition_options,
    partition_stats,
    split_local_test,
)
from ..errors import InputError
from ..models import FlatModel, build_model, model_options
from ..models.cost import ModelCost, model_cost
from ..privacy import MembershipSets, plan_privacy, split_holdout
from ..pruning.prunable import method_prunable, prunable_mask
from ..training.augment import check_augmentation


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
    privacy: MembershipSets | None = None  # members and held-out non-members (privacy.enabled)
    cost: ModelCost | None = None  # parameters and FLOPs per layer (models.cost)


def section_options(section, accepted: tuple[str, ...]) -> dict:
    """The keys of a config section that a loader or partitioner accepts, by name."""
    out = {}
    for name in accepted:
        value = getattr(section, name, None)
        if value is not None:
            out[name] = tuple(value) if isinstance(value, tuple) else value
    return out


def build_setup(config: Config, world_size: int, device: str) -> Setup:
    """Build data, partition, model and algorithm for a run (raises InputError on bad input)."""
    seed = config.runtime.seed
    options = section_options(config.data, dataset_options(config.data.name))
    dataset = load_dataset(config.data.name, root=config.data.root, seed=seed, **options)
    check_augmentation(config.data, dataset.input_shape)
    num_clients = config.partition.num_clients
    if world_size > num_clients:
        raise InputError(
            f"{world_size} ranks for {num_clients} clients: use at most as many ranks as clients"
        )
    scheme = config.partition.scheme
    options = section_options(config.partition, partition_options(scheme))
    bins = config.partition.bins
    kept = holdout = None
    if config.privacy.enabled:  # non-members: a seeded slice that no client ever holds
        kept, holdout = split_holdout(len(dataset.y_train), config.privacy.holdout, seed=seed)
    targets = dataset.y_train if kept is None else dataset.y_train[kept]
    parts = partition(targets, num_clients, scheme, seed=seed, bins=bins, **options)
    if kept is not None:
        parts = [kept[p] for p in parts]
    test_parts = None
    if config.partition.local_test_fraction > 0:
        parts, test_parts = split_local_test(parts, config.partition.local_test_fraction, seed=seed)
    sizes = np.array([len(p) for p in parts], dtype=np.int64)
    if (sizes == 0).any():
        raise InputError(
            f"{int((sizes == 0).sum())} clients received no training samples; "
            "use fewer clients or more data"
        )
    privacy = plan_privacy(config, parts, holdout) if holdout is not None else None
    labels = as_labels(dataset.y_train, bins=bins)
    regression = dataset.y_train if dataset.task == "regression" else None
    stats = partition_stats(labels, parts, dataset.num_classes or bins, targets=regression)
    options = section_options(
        getattr(config.model, config.model.name, None), tuple(model_options(config.model.name))
    )
    if config.model.init is not None:
        options["init"] = config.model.init
    module = build_model(
        config.model.name, dataset.input_shape, dataset.num_classes, seed=seed, **options
    )
    model = FlatModel(module.to(device), device=device)
    method = getattr(config.algorithm, config.algorithm.name, None)
    if hasattr(method, "prunable"):  # the method's preset and exclusions
        key = f"algorithm.{config.algorithm.name}"
        prunable = method_prunable(model.layout, method, key, device=device)
    else:
        prunable = prunable_mask(model.layout, "all_trainable", device=device)
    algorithm = make_algorithm(
        config, prunable, model.trainable_mask().to(device), model.layout, model.module
    )
    return Setup(
        dataset,
        parts,
        test_parts,
        sizes,
        stats,
        model,
        algorithm,
        device,
        cohort_size(config),
        privacy,
        model_cost(model, dataset.input_shape),
    )


def to_device(array: np.ndarray, device: str) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array)).to(device)
