"""Pruning as data: masks over the flat model, scores, top-k, ERK allocation, schedules.

A mask is one 1-D bool tensor over the whole flat vector (True = kept, always True outside
the prunable set). Pruning a fraction ``s`` of ``N`` prunable entries removes exactly
``floor(s * N)`` of them (`pruned_count`); ties go to the lower flat index.
"""

from .erk import erk_counts, erk_densities, erk_random_mask, random_mask
from .magnitude import (
    global_magnitude_mask,
    global_score_mask,
    layerwise_magnitude_mask,
    lowest_k,
)
from .masks import (
    apply_mask_,
    check_fraction,
    dense_mask,
    density,
    float_mask,
    kept_count,
    nonzero_mask,
    pack_mask,
    pruned_count,
    sparsity,
    unpack_mask,
)
from .prunable import PRUNABLE_PRESETS, prunable_mask, prunable_tensors, tensors_in
from .saliency import snip_mask, snip_scores
from .schedules import (
    SCHEDULES,
    Constant,
    CosineDrop,
    Cubic,
    FedDIPLambda,
    Multiplicative,
    build_schedule,
    constant_sparsity,
    cosine_drop_fraction,
    cubic_sparsity,
    feddip_lambda,
    multiplicative_sparsity,
)

__all__ = [
    "PRUNABLE_PRESETS",
    "SCHEDULES",
    "Constant",
    "CosineDrop",
    "Cubic",
    "FedDIPLambda",
    "Multiplicative",
    "apply_mask_",
    "build_schedule",
    "check_fraction",
    "constant_sparsity",
    "cosine_drop_fraction",
    "cubic_sparsity",
    "dense_mask",
    "density",
    "erk_counts",
    "erk_densities",
    "erk_random_mask",
    "feddip_lambda",
    "float_mask",
    "global_magnitude_mask",
    "global_score_mask",
    "kept_count",
    "layerwise_magnitude_mask",
    "lowest_k",
    "multiplicative_sparsity",
    "nonzero_mask",
    "pack_mask",
    "prunable_mask",
    "prunable_tensors",
    "pruned_count",
    "random_mask",
    "snip_mask",
    "snip_scores",
    "sparsity",
    "tensors_in",
    "unpack_mask",
]
