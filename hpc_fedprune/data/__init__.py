"""Data sets and their split over simulated clients.

``load_dataset`` reads a real data set from local files (nothing is downloaded) or
generates a synthetic one; ``partition`` splits its training set over clients from the
targets and the seed alone, never from the MPI world.
"""

from .datasets import (
    DATASETS,
    Dataset,
    channel_stats,
    dataset_names,
    dataset_options,
    load_dataset,
    standardize,
    train_stats,
)
from .ondemand import OnDemandRows
from .partition import (
    SCHEMES,
    as_labels,
    partition,
    partition_options,
    partition_schemes,
    partition_stats,
    split_local_test,
)

__all__ = [
    "DATASETS",
    "SCHEMES",
    "Dataset",
    "OnDemandRows",
    "as_labels",
    "channel_stats",
    "dataset_names",
    "dataset_options",
    "load_dataset",
    "partition",
    "partition_options",
    "partition_schemes",
    "partition_stats",
    "split_local_test",
    "standardize",
    "train_stats",
]
