"""A custom data set as a plug-in: Gaussian blobs around random class centres.

A loader is a function of ``root`` and ``seed`` whose other keyword-only parameters are
its options; the run fills them from the ``data`` keys of the same names
(``data.num_train``, ``data.num_classes``, ``data.noise``, ...). Its randomness comes from
the run's seed only, so every rank generates the same data.
"""

from __future__ import annotations

import numpy as np

from hpc_fedprune.data import Dataset
from hpc_fedprune.registry import DATASETS
from hpc_fedprune.rng import Stream, numpy_rng


@DATASETS.register("blobs")
def blobs(
    *, root, seed, num_train: int = 600, num_test: int = 200, num_classes: int = 4,
    noise: float = 1.0,
) -> Dataset:  # fmt: skip
    """``num_classes`` blobs in 16 dimensions, as (N, 1, 16) float32 inputs."""
    rng = numpy_rng(seed, Stream.DATA)
    centres = rng.normal(0.0, 2.0, size=(num_classes, 16))
    y = rng.integers(0, num_classes, size=num_train + num_test)
    x = centres[y] + rng.normal(0.0, noise, size=(len(y), 16))
    x = x.astype(np.float32).reshape(len(y), 1, 16)
    y = y.astype(np.int64)
    return Dataset(
        x[:num_train], y[:num_train], x[num_train:], y[num_train:],
        "classification", num_classes, "blobs", "generated",
    )  # fmt: skip
