"""CSV tables of a run's metrics and mask statistics.

Cells hold plain numbers; a value that does not exist (a round without evaluation, the
change at the first mask record) is an empty cell, which pandas and spreadsheets read as
missing. Floats keep full precision.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from .masks import ClientAgreement, MaskHistory, MaskRecordStats
from .runfile import Run


def cell(value: object) -> str:
    """One CSV cell: ints as ints, floats with full precision, None and NaN empty."""
    if value is None:
        return ""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ""
    return str(value)


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[object]]) -> Path:
    """Write a header and rows to ``path`` (overwriting); return ``path``."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        for row in rows:
            w.writerow([cell(v) for v in row])
    return path


def cumulative_bytes(metrics: dict[str, np.ndarray]) -> np.ndarray | None:
    """Cumulative client traffic (up + down) after each round, or None without byte data."""
    if "bytes_up" not in metrics or "bytes_down" not in metrics:
        return None
    per_round = metrics["bytes_up"].astype(np.float64) + metrics["bytes_down"].astype(np.float64)
    return np.cumsum(per_round)


def write_metrics_csv(path: Path, run: Run) -> Path:
    """``metrics.csv``: every metric of ``/metrics`` per round, plus ``cumulative_bytes``."""
    columns = dict(run.metrics)
    cum = cumulative_bytes(run.metrics)
    if cum is not None:
        columns["cumulative_bytes"] = cum
    header = list(columns)
    rows = zip(*(columns[k].tolist() for k in header), strict=True) if header else iter(())
    return write_csv(path, header, rows)


_MASK_HEADER = (
    "round",
    "tensor",
    "numel",
    "kept",
    "sparsity",
    "pruned",
    "regrown",
    "hamming",
    "change_rate",
    "jaccard",
)


def _mask_row(s: MaskRecordStats) -> tuple[object, ...]:
    return (
        s.round,
        s.tensor,
        s.numel,
        s.kept,
        s.sparsity,
        s.pruned,
        s.regrown,
        s.hamming,
        s.change_rate,
        s.jaccard,
    )


def write_mask_stats_csv(path: Path, history: MaskHistory) -> Path:
    """``mask_stats.csv``: one row per tensor per mask record."""
    return write_csv(path, _MASK_HEADER, (_mask_row(s) for s in history.per_tensor))


def write_mask_overall_csv(path: Path, history: MaskHistory) -> Path:
    """``mask_overall.csv``: one row per mask record, over all prunable tensors."""
    return write_csv(path, _MASK_HEADER, (_mask_row(s) for s in history.overall))


def write_mask_tensors_csv(path: Path, history: MaskHistory) -> Path:
    """``mask_tensors.csv``: the whole history per tensor, and over all (last row)."""
    header = (
        "tensor",
        "numel",
        "records",
        "first_round",
        "last_round",
        "final_sparsity",
        "total_pruned",
        "total_regrown",
        "stable_after_round",
        "ever_regrown",
        "ever_regrown_fraction",
    )
    rows = (
        (
            s.tensor,
            s.numel,
            s.records,
            s.first_round,
            s.last_round,
            s.final_sparsity,
            s.total_pruned,
            s.total_regrown,
            s.stable_after_round,
            s.ever_regrown,
            s.ever_regrown_fraction,
        )
        for s in history.summaries.values()
    )
    return write_csv(path, header, rows)


def write_client_agreement_csv(path: Path, rows: list[ClientAgreement]) -> Path:
    """``client_agreement.csv``: per round and tensor, how much client masks agree."""
    header = (
        "round",
        "tensor",
        "clients",
        "numel",
        "mean_pairwise_jaccard",
        "min_pairwise_jaccard",
        "max_pairwise_jaccard",
        "kept_by_all_fraction",
        "kept_by_none_fraction",
    )
    body = (
        (
            r.round,
            r.tensor,
            r.clients,
            r.numel,
            r.mean_jaccard,
            r.min_jaccard,
            r.max_jaccard,
            r.kept_by_all_fraction,
            r.kept_by_none_fraction,
        )
        for r in rows
    )
    return write_csv(path, header, body)


def write_client_keep_histogram_csv(path: Path, rows: list[ClientAgreement]) -> Path:
    """``client_keep_histogram.csv``: per round and tensor, positions kept by k clients.

    Long format (one row per k) because the number of clients varies between rounds.
    """
    header = ("round", "tensor", "clients", "kept_by", "positions")
    body = (
        (r.round, r.tensor, r.clients, k, int(count))
        for r in rows
        for k, count in enumerate(r.kept_by.tolist())
    )
    return write_csv(path, header, body)
