"""The ``/model/cost`` group of the run file: parameters and FLOPs per layer, dense."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from ..models.cost import CONVENTION, ModelCost


def write_model_cost(path: Path, cost: ModelCost, input_shape: tuple[int, ...]) -> None:
    """Rank 0: write the dense cost table of ``cost`` as ``/model/cost`` of ``path``.

    Datasets ``layer`` (module names), ``params`` and ``flops`` (int64, per sample), one
    entry per layer, in the column order of ``/metrics_layers``; attributes
    ``input_shape`` and ``convention``.
    """
    table = cost.dense_table()
    with h5py.File(path, "a") as f:
        model = f.require_group("model")
        if "cost" in model:
            del model["cost"]
        group = model.create_group("cost")
        group.create_dataset("layer", data=np.array(table["layer"], dtype=h5py.string_dtype()))
        group.create_dataset("params", data=table["params"])
        group.create_dataset("flops", data=table["flops"])
        group.attrs["input_shape"] = np.array(input_shape, dtype=np.int64)
        group.attrs["convention"] = CONVENTION
