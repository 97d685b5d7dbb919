"""Everything a run builds before its first round, the same on every rank.

Data, partition, model and algorithm are pure functions of the config, so every rank
builds them itself instead of receiving them: no broadcast of data, and a rank that
fails to build them reports an input error that all ranks agree on. The one exception is
the data set's arrays under MPI with ``data.shared_memory``: one rank per node builds them
into shared memory and the others of its node read that copy (`comm.shared.NodeShared`);
the arrays are the same bits either way.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import torch

from ..algorithms import make_algorithm
from ..comm.shared import NodeShared
from ..config import Config, cohort_size
from ..data import (
    Dataset,
    OnDemandRows,
    as_labels,
    dataset_options,
    load_dataset,
    partition,
    partition_options,
    partition_stats,
    split_local_test,
    standardize,
    train_stats,
)
from ..errors import InputError
from ..models import FlatModel, build_model, model_options
from ..models.cost import ModelCost, model_cost
from ..privacy import MembershipSets, plan_privacy, split_holdout
from ..pruning.prunable import method_prunable, prunable_mask
from ..training.augment import check_augmentation
from ..training.samples import DeviceRows


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
    shared: NodeShared | None = field(default=None, repr=False)  # the node's data copy, if shared

    def release(self) -> None:
        """Free the node's shared copy of the data (collective over the node; a no-op when
        each rank holds its own). The data set must not be used afterwards."""
        if self.shared is not None:
            self.shared.free()
            self.shared = None


def section_options(section, accepted: tuple[str, ...]) -> dict:
    """The keys of a config section that a loader or partitioner accepts, by name."""
    out = {}
    for name in accepted:
        value = getattr(section, name, None)
        if value is not None:
            out[name] = tuple(value) if isinstance(value, tuple) else value
    return out


def build_setup(config: Config, world_size: int, device: str, *, world=None) -> Setup:
    """Build data, partition, model and algorithm for a run (raises InputError on bad input).

    ``world`` (the run's `World`, optional) lets the ranks of a node share one copy of the
    data set (`load_data`); building is then collective over every rank of ``world``, and
    `Setup.release` frees the copy at the end of the run.
    """
    seed = config.runtime.seed
    dataset, shared = load_data(config, world)
    try:
        return _build_rest(config, dataset, shared, seed, device)
    except InputError:
        if shared is not None:  # every rank fails here alike: the checks below are global
            shared.free()
        raise


def load_data(config: Config, world=None) -> tuple[Dataset, NodeShared | None]:
    """The run's data set: shared per node when ``world`` has several ranks, else loaded here.

    Shared (``data.shared_memory``, the default, and an in-memory loader): rank 0 of each
    node loads or generates the data set and every rank of the node gets read-only views of
    that one copy, with the arrays' bits unchanged. Collective over ``world``.
    """
    data = config.data
    options = section_options(data, dataset_options(data.name))

    def load() -> Dataset:
        return load_dataset(data.name, root=data.root, seed=config.runtime.seed, **options)

    if data.on_demand and world is not None and world.size > 1:
        return _load_on_demand(data, options, config.runtime.seed, world), None
    if world is None or world.size == 1 or not data.shared_memory or data.on_demand:
        return load(), None
    shared = NodeShared(world.comm, world.wait)
    try:
        arrays, meta = shared.share(lambda: _dataset_parts(load()))
    except InputError:
        shared.free()
        raise
    return Dataset(**arrays, **meta), shared


def _load_on_demand(data, options: dict, seed: int, world) -> Dataset:
    """A data set read on demand, its normalisation statistics computed by rank 0 alone.

    The statistics take two passes over the training inputs in the file; every rank
    would get the same bits, so one reads and the others receive them (collective).
    """
    ds = error = None
    try:  # opens the file and reads the targets (the inputs stay there)
        ds = load_dataset(data.name, root=data.root, seed=seed, normalize=False, **options)
    except InputError as exc:
        error = exc
    world.agree_on_input_errors(error)  # a file missing on one node: every rank stops
    stats = error = None
    if world.is_root:
        try:
            stats = train_stats(ds)
        except InputError as exc:
            error = str(exc)
    world.quiet_barrier()  # the others wait here (asleep where ranks share cores)
    stats, error = world.bcast_object((stats, error))
    if error is not None:
        raise InputError(error)
    return standardize(ds, stats)


def _dataset_parts(ds: Dataset) -> tuple[dict[str, np.ndarray], dict]:
    """A data set as its arrays and the rest of its fields (for `NodeShared.share`)."""
    names = ("x_train", "y_train", "x_test", "y_test")
    meta = {"task": ds.task, "num_classes": ds.num_classes, "name": ds.name, "source": ds.source}
    return {k: getattr(ds, k) for k in names}, meta


def idle_ranks(config: Config, world_size: int) -> int:
    """Ranks that never train a client in a round: at most one rank per sampled client.

    The schedule (`cohort.schedule_cohort`) hands a round's clients to the least loaded
    ranks, lowest rank first, so with more ranks than clients per round the ranks from
    ``cohort_size`` on get none; they still take part in every collective.
    """
    return max(0, world_size - cohort_size(config))


def _build_rest(config: Config, dataset: Dataset, shared, seed: int, device: str) -> Setup:
    """Partition, model and algorithm around a loaded data set."""
    check_augmentation(config.data, dataset.input_shape)
    num_clients = config.partition.num_clients
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
    options.update(config.model.options or {})  # a plug-in network's options
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
        shared,
    )


def to_device(array, device: str):
    """An array on the rank's device: a tensor, or for data read on demand its device view.

    The node's shared copy of a data set is read-only; torch has no read-only tensors, so
    the tensor wraps that memory as it is (no copy on the CPU): the training code only ever
    reads its inputs, by index.
    """
    if isinstance(array, OnDemandRows):
        return DeviceRows(array, device)
    array = np.ascontiguousarray(array)
    if array.flags.writeable:
        return torch.from_numpy(array).to(device)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "The given NumPy array is not writable")
        return torch.from_numpy(array).to(device)
