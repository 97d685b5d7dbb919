"""The secondary scores and the model cost of a run, as text and CSV.

Secondary scores are the ``/metrics`` columns beside the headline metric: top-5 accuracy,
macro F1, precision and recall (classification), RMSE and R^2 (regression). Model cost:
``params_*`` and ``flops_*`` of ``/metrics`` (whole model, per round) and the per-layer
tables ``/model/cost`` (dense) and ``/metrics_layers`` (effective, per round).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .runfile import LayerCosts
from .tables import write_csv
from .units import format_percent

# Metric -> label, in display order. Accuracies as percentages, the rest as numbers.
SCORES = {
    "test_top5_accuracy": "top-5",
    "test_f1_macro": "F1 (macro)",
    "test_precision_macro": "precision (macro)",
    "test_recall_macro": "recall (macro)",
    "test_rmse": "RMSE",
    "test_r2": "R^2",
}
COST = ("params_dense", "params_effective", "flops_dense", "flops_effective")


def format_score(key: str, value: float) -> str:
    """A secondary score for text: accuracies in per cent, the others to 4 digits."""
    if not math.isfinite(value):
        return "n/a"
    if key.endswith("accuracy"):
        return format_percent(value, 2)
    return f"{value:.4g}"


def format_count(n: float) -> str:
    """``118282`` -> ``"118 k"``, ``1.11e9`` -> ``"1.11 G"`` (decimal prefixes)."""
    if n is None or not math.isfinite(n):
        return "n/a"
    for prefix, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.3g} {prefix}"
    return f"{int(n)}"


def scores_at(metrics: dict[str, np.ndarray], row: int | None) -> dict[str, float]:
    """The secondary scores present in ``metrics`` at row ``row`` (NaN when None)."""
    out = {}
    for key in SCORES:
        if key in metrics:
            out[key] = float(metrics[key][row]) if row is not None else float("nan")
    return out


def last_cost(metrics: dict[str, np.ndarray]) -> dict[str, float]:
    """``params_*`` and ``flops_*`` after the last round (empty for older run files)."""
    return {k: float(metrics[k][-1]) for k in COST if k in metrics and len(metrics[k])}


def scores_line(scores: dict[str, float], round_: int | None) -> str:
    """``top-5 93.10 %, F1 (macro) 0.812, ...`` with the round they were measured in."""
    text = ", ".join(f"{SCORES[k]} {format_score(k, v)}" for k, v in scores.items())
    return f"{text} (round {round_})" if round_ is not None else text


def cost_line(cost: dict[str, float]) -> str:
    """Parameters and FLOPs per sample, dense and effective under the final mask."""

    def pair(kind: str, unit: str) -> str:
        dense, eff = cost[f"{kind}_dense"], cost[f"{kind}_effective"]
        share = format_percent(eff / dense) if dense > 0 else "n/a"
        return f"{unit} {format_count(dense)} dense, {format_count(eff)} effective ({share})"

    return f"{pair('params', 'params')}; {pair('flops', 'FLOPs per sample')}"


def write_layer_cost_csv(path: Path, costs: LayerCosts) -> Path:
    """``layer_cost.csv``: per layer, dense and final effective parameters and FLOPs."""
    header = (
        "layer",
        "params_dense",
        "params_effective",
        "flops_dense",
        "flops_effective",
        "flops_fraction",
    )
    rows = []
    for i, name in enumerate(costs.layers):
        p_eff = _last(costs.params_effective, i)
        f_eff = _last(costs.flops_effective, i)
        dense = int(costs.flops[i])
        fraction = f_eff / dense if f_eff is not None and dense > 0 else None
        rows.append((name, int(costs.params[i]), p_eff, dense, f_eff, fraction))
    return write_csv(path, header, rows)


def _last(table: np.ndarray | None, column: int) -> int | None:
    if table is None or not len(table):
        return None
    return int(table[-1, column])
