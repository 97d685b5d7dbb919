"""Membership-inference results of a run: the ``/privacy`` rows, as text and CSV.

Rows come from the run file itself (attacks run during the run) and from ``privacy.h5``
beside it (written by the ``privacy`` command), marked by their ``source`` column.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .runfile import read_table
from .tables import write_csv

SOURCES = (("run", "run.h5"), ("privacy command", "privacy.h5"))


def read_privacy(run_file: Path) -> list[dict]:
    """Every ``/privacy`` row of a run, as dicts with a ``source`` key (may be empty)."""
    rows: list[dict] = []
    for source, name in SOURCES:
        path = Path(run_file) if source == "run" else Path(run_file).parent / name
        if not path.is_file():
            continue
        columns = read_table(path, "privacy")  # cut to the shortest column
        if not columns:
            continue
        n = min(len(v) for v in columns.values())
        for i in range(n):
            row = {"source": source}
            for key, values in columns.items():
                value = values[i]
                row[key] = value.decode() if isinstance(value, bytes) else value.item()
            rows.append(row)
    return rows


def privacy_lines(rows: list[dict]) -> list[tuple[str, str]]:
    """Summary lines: each attack's result at the last round it was run (run's rows first)."""
    lines = []
    for source, _ in SOURCES:
        mine = [r for r in rows if r["source"] == source]
        if not mine:
            continue
        last = max(r["round"] for r in mine)
        for r in (r for r in mine if r["round"] == last):
            quality = _quality(r)
            where = "" if source == "run" else f", {source}"
            lines.append(
                (
                    f"MI {r['attack']}",
                    f"AUC {r['auc']:.3f}, advantage {r['advantage']:.3f} at round {last} "
                    f"({r['members']} members / {r['nonmembers']} non-members{quality}{where})",
                )
            )
    return lines


def _quality(r: dict) -> str:
    for name in ("accuracy", "mae"):
        a, b = r.get(f"member_{name}"), r.get(f"nonmember_{name}")
        if a is not None and b is not None and math.isfinite(a) and math.isfinite(b):
            return f"; {name} {a:.3f} members vs {b:.3f} non-members"
    return ""


def write_privacy_csv(path: Path, rows: list[dict]) -> Path:
    """``privacy.csv``: one line per (source, round, attack)."""
    first = ("source", "round", "attack", "auc", "advantage", "balanced_accuracy")
    header = list(dict.fromkeys([*first, *(k for r in rows for k in r)]))
    return write_csv(path, header, ([r.get(k, np.nan) for k in header] for r in rows))
