"""Several runs side by side: one table, and which runs are on the accuracy/bytes frontier."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .scores import COST, SCORES, format_score
from .summary import Summary
from .tables import write_csv
from .units import format_bytes, format_percent


def pareto_front(
    quality: Sequence[float], cost: Sequence[float], higher_is_better: bool = True
) -> np.ndarray:
    """Which points no other point beats on both quality and cost.

    Point i is on the front when no point j is at least as good in quality and at most as
    costly, and strictly better in one of the two. Points with a non-finite quality or cost
    are never on the front (a run never evaluated has nothing to offer).

    Parameters
    ----------
    quality : sequence of float
        E.g. final accuracy.
    cost : sequence of float
        E.g. total bytes; lower is better.
    higher_is_better : bool
        False when quality is an error (MAE).

    Returns
    -------
    numpy.ndarray
        bool, one per point.
    """
    q = np.asarray(quality, dtype=np.float64)
    c = np.asarray(cost, dtype=np.float64)
    if not higher_is_better:
        q = -q
    valid = np.isfinite(q) & np.isfinite(c)
    on = valid.copy()
    for i in np.flatnonzero(valid):
        others = valid.copy()
        others[i] = False
        dominated = (q >= q[i]) & (c <= c[i]) & ((q > q[i]) | (c < c[i])) & others
        on[i] = not dominated.any()
    return on


NAN = float("nan")
# Secondary scores shown in the text table (the CSV has them all).
_TABLE_SCORES = ("test_top5_accuracy", "test_f1_macro", "test_rmse", "test_r2")


def _flops_ratio(s: Summary) -> str:
    dense, eff = s.cost.get("flops_dense", NAN), s.cost.get("flops_effective", NAN)
    return f"{eff / dense:.3g} x" if dense > 0 and math.isfinite(eff) else "n/a"


COMPARE_HEADER = (
    "run",
    "method",
    "dataset",
    "model",
    "metric",
    "final",
    "best",
    "final_sparsity",
    "bytes_up",
    "bytes_down",
    "ratio_to_dense",
    *(f"final_{k.removeprefix('test_')}" for k in SCORES),
    *COST,
    "rounds_done",
    "status",
    "pareto",
    "path",
)


def write_compare_csv(path: Path, summaries: Sequence[Summary], front: Sequence[bool]) -> Path:
    """``compare.csv``: one row per run (raw numbers, bytes in bytes)."""
    rows = (
        (
            s.name,
            s.algorithm,
            s.dataset,
            s.model,
            s.quality.key,
            s.final,
            s.best,
            s.final_sparsity,
            s.bytes_up,
            s.bytes_down,
            s.ratio_total,
            *(s.scores.get(k, NAN) for k in SCORES),
            *(s.cost.get(k, NAN) for k in COST),
            s.rounds_done,
            s.status,
            bool(on),
            s.path,
        )
        for s, on in zip(summaries, front, strict=True)
    )
    return write_csv(path, COMPARE_HEADER, rows)


def render_compare_table(summaries: Sequence[Summary], front: Sequence[bool]) -> str:
    """The comparison as an aligned text table; ``*`` marks runs on the Pareto frontier.

    Besides the headline metric: the secondary scores any of the runs has (top-5 and
    macro F1, or RMSE and R^2) and the effective FLOPs per sample as a fraction of dense.
    """
    q = summaries[0].quality
    shown = [k for k in _TABLE_SCORES if any(k in s.scores for s in summaries)]
    header = (
        "",
        "run",
        "method",
        "dataset",
        f"final {q.label}",
        f"best {q.label}",
        *(SCORES[k] for k in shown),
        "sparsity",
        "FLOPs vs dense",
        "bytes up",
        "bytes down",
        "vs dense",
        "rounds",
        "status",
    )
    rows = [
        (
            "*" if on else "",
            s.name,
            s.algorithm,
            s.dataset,
            s.quality.fmt(s.final),
            s.quality.fmt(s.best),
            *(format_score(k, s.scores.get(k, NAN)) for k in shown),
            format_percent(s.final_sparsity),
            _flops_ratio(s),
            format_bytes(s.bytes_up),
            format_bytes(s.bytes_down),
            f"{s.ratio_total:.3g} x" if math.isfinite(s.ratio_total) else "n/a",
            f"{s.rounds_done}/{s.rounds_planned}" if s.rounds_planned else str(s.rounds_done),
            s.status,
        )
        for s, on in zip(summaries, front, strict=True)
    ]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    # Text columns left-aligned, numbers right-aligned (the status is last).
    left = {0, 1, 2, 3, len(header) - 1}

    def line(r: Sequence[str]) -> str:
        cells = [
            f"{v:<{w}}" if i in left else f"{v:>{w}}"
            for i, (v, w) in enumerate(zip(r, widths, strict=True))
        ]
        return "  ".join(cells).rstrip()

    out = [line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)]
    better = "higher" if q.higher_is_better else "lower"
    out.append(
        f"* = on the Pareto frontier: no other run has a {better} final {q.label} for no more "
        f"bytes, or the same for fewer (bytes = up + down)"
    )
    return "\n".join(out)
