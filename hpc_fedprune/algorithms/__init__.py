"""Federated methods as small classes over one shared round loop (no MPI here)."""

from __future__ import annotations

from ..registry import ALGORITHMS
from .autoflip import AutoFLIP
from .base import (
    Algorithm,
    Channel,
    ClientPlan,
    ClientUpdate,
    Difference,
    GlobalModel,
    Readjust,
    RoundContext,
    ServerResult,
    ServerState,
)
from .feddip import FedDIP
from .feddst import FedDST
from .fedprox import FedProx
from .fedsparsify import FedSparsify
from .oneshot import OneShot
from .prunefl import PruneFL
from .random_mask import RandomMask
from .snip import SNIP
from .topk import TopK

# The built-in methods, by the names `hpc_fedprune.registry.ALGORITHMS` declares for them.
for _name, _cls in {
    "fedavg": Algorithm,
    "fedprox": FedProx,
    "fedsparsify": FedSparsify,
    "feddip": FedDIP,
    "snip": SNIP,
    "oneshot": OneShot,
    "random_mask": RandomMask,
    "prunefl": PruneFL,
    "feddst": FedDST,
    "autoflip": AutoFLIP,
    "topk": TopK,
}.items():
    ALGORITHMS.register(_name)(_cls)

#: Name -> class of every registered method (built-in and plug-ins'), a live view.
REGISTRY = ALGORITHMS


def make_algorithm(config, prunable, trainable, layout=(), module=None) -> Algorithm:
    """The algorithm object named by ``config.algorithm.name``, given the model's layout
    (and the network, for methods that need its graph)."""
    return ALGORITHMS.get(config.algorithm.name)(config, prunable, trainable, layout, module)


__all__ = [
    "ALGORITHMS",
    "REGISTRY",
    "Algorithm",
    "Channel",
    "ClientPlan",
    "ClientUpdate",
    "Difference",
    "GlobalModel",
    "Readjust",
    "RoundContext",
    "ServerResult",
    "ServerState",
    "make_algorithm",
]
