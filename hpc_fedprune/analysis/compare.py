"""Several runs side by side: one table, and which runs are on the accuracy/bytes frontier."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from .groups import Row
from .scores import COST, SCORES, format_score
from .summary import Quality, Summary
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


def _flops_fraction(s: Summary) -> float:
    dense, eff = s.cost.get("flops_dense", NAN), s.cost.get("flops_effective", NAN)
    return eff / dense if dense > 0 else NAN


def _flops_ratio(row: Row) -> str:
    """Effective FLOPs per sample as a fraction of dense, averaged over the row's runs."""
    ratio = row.mean(_flops_fraction)
    return f"{ratio:.3g} x" if math.isfinite(ratio) else "n/a"


COMPARE_HEADER = (
    "run",
    "label",
    "group",
    "seed",
    "method",
    "algorithm",
    "dataset",
    "model",
    "metric",
    "final",
    "best",
    "final_sparsity",
    "bytes_up",
    "bytes_down",
    "uplink_vs_dense",
    "downlink_vs_dense",
    "traffic_vs_dense",
    *(f"final_{k.removeprefix('test_')}" for k in SCORES),
    *COST,
    "rounds_done",
    "status",
    "pareto",
    "path",
)


def write_compare_csv(
    path: Path, rows: Sequence[Row], front: Sequence[bool], names: Mapping[str, str]
) -> Path:
    """``compare.csv``: one line per run (raw numbers, bytes in bytes).

    ``group`` numbers the rows of the table (runs over seeds of one experiment share it),
    ``label`` is the row's label, and ``pareto`` says whether the row is on the frontier.
    ``names`` maps each run file to its short name.
    """
    lines = (
        (
            names[s.path],
            row.label,
            g + 1,
            s.seed,
            s.method,
            s.algorithm,
            s.dataset,
            s.model,
            s.quality.key,
            s.final,
            s.best,
            s.final_sparsity,
            s.bytes_up,
            s.bytes_down,
            s.uplink_vs_dense,
            s.downlink_vs_dense,
            s.traffic_vs_dense,
            *(s.scores.get(k, NAN) for k in SCORES),
            *(s.cost.get(k, NAN) for k in COST),
            s.rounds_done,
            s.status,
            bool(on),
            s.path,
        )
        for g, (row, on) in enumerate(zip(rows, front, strict=True))
        for s in row.members
    )
    return write_csv(path, COMPARE_HEADER, lines)


GROUPS_HEADER = (
    "group",
    "label",
    "runs",
    "seeds",
    "metric",
    "final_mean",
    "final_std",
    "best_mean",
    "best_std",
    "final_sparsity_mean",
    "bytes_up_mean",
    "bytes_down_mean",
    "traffic_vs_dense_mean",
    "traffic_vs_dense_std",
    "rounds_done",
    "pareto",
)


def write_groups_csv(path: Path, rows: Sequence[Row], front: Sequence[bool]) -> Path:
    """``compare_groups.csv``: one line per table row, means and sample standard deviations
    (ddof 1) over the row's runs; ``runs`` is n."""
    lines = (
        (
            g + 1,
            row.label,
            row.n,
            row.seeds,
            row.first.quality.key,
            row.final[0],
            row.final[1],
            row.best[0],
            row.best[1],
            row.mean("final_sparsity"),
            row.mean("bytes_up"),
            row.mean("bytes_down"),
            row.mean("traffic_vs_dense"),
            row.std("traffic_vs_dense"),
            row.rounds_done,
            bool(on),
        )
        for g, (row, on) in enumerate(zip(rows, front, strict=True))
    )
    return write_csv(path, GROUPS_HEADER, lines)


def _with_spread(q: Quality, stat: tuple[float, float, int]) -> str:
    """``84.06 %`` for one value, ``84.06 ± 0.31 %`` over seeds."""
    mean, sd, _n = stat
    if not math.isfinite(sd):
        return q.fmt(mean)
    if q.key == "test_accuracy":
        return f"{100 * mean:.2f} ± {100 * sd:.2f} %"
    return f"{mean:.4g} ± {sd:.2g}"


def render_compare_table(
    rows: Sequence[Row], front: Sequence[bool], names: Mapping[str, str]
) -> str:
    """The comparison as an aligned text table; ``*`` marks rows on the Pareto frontier.

    A row is a run, or a group of runs over seeds (then the numbers are means, with the
    sample standard deviation after ``±`` for the quality metric).
    """
    q = rows[0].first.quality
    grouped = any(r.n > 1 for r in rows)
    shown = [k for k in _TABLE_SCORES if any(k in s.scores for r in rows for s in r.members)]
    header = (
        "",
        "label",
        "run" if not grouped else "runs",
        "seed" if not grouped else "seeds",
        "dataset",
        f"final {q.label}",
        f"best {q.label}",
        *(SCORES[k] for k in shown),
        "sparsity",
        "FLOPs vs dense",
        "bytes up",
        "bytes down",
        "traffic_vs_dense",
        "rounds",
        "status",
    )
    body = []
    for row, on in zip(rows, front, strict=True):
        s = row.first
        run_name = names[s.path] + (f" +{row.n - 1}" if row.n > 1 else "")
        ratio = row.mean("traffic_vs_dense")
        body.append(
            (
                "*" if on else "",
                row.label,
                run_name,
                row.seeds,
                s.dataset,
                _with_spread(q, row.final),
                _with_spread(q, row.best),
                *(format_score(k, row.mean(lambda s, k=k: s.scores.get(k, NAN))) for k in shown),
                format_percent(row.mean("final_sparsity")),
                _flops_ratio(row),
                format_bytes(row.mean("bytes_up")),
                format_bytes(row.mean("bytes_down")),
                f"{ratio:.3f}" if math.isfinite(ratio) else "n/a",
                f"{row.rounds_done}/{s.rounds_planned}"
                if s.rounds_planned
                else str(row.rounds_done),
                row.status,
            )
        )
    widths = [max(len(str(r[i])) for r in [header, *body]) for i in range(len(header))]
    # Text columns left-aligned, numbers right-aligned.
    left = {0, 1, 2, 3, 4, len(header) - 1}

    def line(r: Sequence[str]) -> str:
        cells = [
            f"{v:<{w}}" if i in left else f"{v:>{w}}"
            for i, (v, w) in enumerate(zip(r, widths, strict=True))
        ]
        return "  ".join(cells).rstrip()

    out = [line(header), line(["-" * w for w in widths]), *(line(r) for r in body)]
    better = "higher" if q.higher_is_better else "lower"
    out.append(
        f"* = on the Pareto frontier: no other row has a {better} final {q.label} for no more "
        f"bytes, or the same for fewer (bytes = up + down)"
    )
    out.append(
        "traffic_vs_dense = (bytes up + bytes down) / (2 x dense float32 uplink of the same "
        "clients)"
    )
    if grouped:
        out.append(
            "rows over several seeds: mean ± sample standard deviation (ddof 1) over the n "
            "seeds listed; sparsity, bytes and traffic_vs_dense are means"
        )
    return "\n".join(out)
