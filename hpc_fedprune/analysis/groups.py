"""Runs that repeat one experiment over seeds, taken together: mean and spread.

Two runs belong to one group when their resolved configs are equal except for
``runtime.seed`` and the keys that only name, place or schedule a run (``output.*``,
``runtime.device``, ``runtime.threads``), and their seeds differ. Runs with the same
config and the same seed are the same experiment (results are bit-identical), so they are
never averaged: each stays a row of its own. The spread is the sample standard deviation
over the group's seeds (``ddof = 1``), reported with the number of seeds n.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .labels import experiment_key, get
from .plots import Series
from .runfile import Run
from .summary import Summary
from .tables import cumulative_bytes

NAN = float("nan")


def seed_groups(
    configs: Sequence[Mapping[str, Any]],
    seeds: Sequence[int | None],
    names: Sequence[str],
    enabled: bool = True,
) -> tuple[list[list[int]], list[str]]:
    """Split runs (by index) into groups of seeds, in the order of first appearance.

    Parameters
    ----------
    configs : sequence of mapping
        Each run's resolved config (empty when unknown: such a run stays alone).
    seeds : sequence of int or None
        Each run's seed.
    names : sequence of str
        Each run's name, for the notes.
    enabled : bool
        False: every run is a group of its own.

    Returns
    -------
    groups : list of list of int
        Indices of the runs in each group.
    notes : list of str
        Why runs with equal configs were not grouped.
    """
    if not enabled:
        return [[i] for i in range(len(configs))], []
    buckets: dict[str, list[int]] = {}
    order: list[str] = []
    for i, config in enumerate(configs):
        key = experiment_key(config) if config else f"#unknown {i}"
        if key not in buckets:
            buckets[key] = []
            order.append(key)
        buckets[key].append(i)
    groups: list[list[int]] = []
    notes: list[str] = []
    for key in order:
        members = buckets[key]
        member_seeds = [seeds[i] for i in members]
        if len(members) > 1 and (None in member_seeds or len(set(member_seeds)) < len(members)):
            notes.append(
                f"runs {', '.join(names[i] for i in members)} share a config and a seed "
                "(the same experiment): shown one by one, not averaged"
            )
            groups.extend([i] for i in members)
        else:
            groups.append(members)
    groups.sort(key=lambda g: g[0])
    return groups, notes


def mean_std(values: Sequence[float]) -> tuple[float, float, int]:
    """Mean and sample standard deviation (ddof 1) of the finite values, and their count.

    The deviation is NaN for fewer than two values; the mean is NaN for none.
    """
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=np.float64)
    if v.size == 0:
        return NAN, NAN, 0
    sd = float(np.std(v, ddof=1)) if v.size > 1 else NAN
    return float(np.mean(v)), sd, int(v.size)


@dataclass(frozen=True)
class Row:
    """One row of the comparison: a single run, or a group of runs over seeds.

    Attributes
    ----------
    label : str
        Legend and table label.
    members : tuple of Summary
        The runs (one for a single run).
    final, best : tuple of (mean, std, n)
        The quality metric over the members (`mean_std`).
    """

    label: str
    members: tuple[Summary, ...]
    final: tuple[float, float, int]
    best: tuple[float, float, int]

    @property
    def n(self) -> int:
        """Number of runs in the row."""
        return len(self.members)

    @property
    def first(self) -> Summary:
        """The first run of the row (its quality metric and data set speak for all)."""
        return self.members[0]

    def mean(self, attribute: str | Callable[[Summary], float]) -> float:
        """Mean over the members of a numeric `Summary` attribute (its name), or of what a
        function of a `Summary` gives (a secondary score, a ratio)."""
        value = attribute if callable(attribute) else (lambda s: getattr(s, attribute))
        return mean_std([value(s) for s in self.members])[0]

    def std(self, attribute: str) -> float:
        """Sample standard deviation of a `Summary` attribute over the members."""
        return mean_std([getattr(s, attribute) for s in self.members])[1]

    @property
    def seeds(self) -> str:
        """The members' seeds, comma-separated."""
        return ",".join("?" if s.seed is None else str(s.seed) for s in self.members)

    @property
    def status(self) -> str:
        """The common status, or how many runs are in each."""
        statuses = [s.status for s in self.members]
        if len(set(statuses)) == 1:
            return statuses[0]
        counts = {st: statuses.count(st) for st in dict.fromkeys(statuses)}
        return ", ".join(f"{n} {st}" for st, n in counts.items())

    @property
    def rounds_done(self) -> int:
        """Rounds completed by every member."""
        return min(s.rounds_done for s in self.members)


def make_row(label: str, members: Sequence[Summary]) -> Row:
    """A `Row` from its runs' summaries."""
    return Row(
        label=label,
        members=tuple(members),
        final=mean_std([s.final for s in members]),
        best=mean_std([s.best for s in members]),
    )


def group_series(runs: Sequence[Run], label: str, quality_key: str) -> Series:
    """One curve for a group: the mean over its runs per round, with their spread.

    Only rounds that every run has completed are drawn. A round counts as evaluated when
    every run evaluated it. A single run gives its own curve without a spread; a group's
    legend label says that it is a mean with its standard deviation over n seeds.
    """
    rounds_each = [_rounds(r) for r in runs]
    common = rounds_each[0]
    for r in rounds_each[1:]:
        common = np.intersect1d(common, r)
    values, traffic = [], []
    for run, rounds in zip(runs, rounds_each, strict=True):
        pick = np.isin(rounds, common)
        n = len(rounds)
        values.append(run.metrics.get(quality_key, np.full(n, np.nan)).astype(np.float64)[pick])
        cum = cumulative_bytes(run.metrics)
        traffic.append(None if cum is None else cum[pick])
    stack = np.stack(values)
    mean = stack.mean(axis=0)
    spread = stack.std(axis=0, ddof=1) if len(runs) > 1 else None
    cum_mean = None if any(t is None for t in traffic) else np.stack(traffic).mean(axis=0)
    if len(runs) > 1:
        label = f"{label} (mean ± sd, {len(runs)} seeds)"
    return Series(label, common, mean, cum_mean, spread)


def _rounds(run: Run) -> np.ndarray:
    return np.asarray(run.metrics.get("round", np.arange(1, run.num_rounds + 1)), dtype=np.int64)


def seed_of(run: Run, config: Mapping[str, Any]) -> int | None:
    """A run's seed: the config's ``runtime.seed``, else the root attribute ``seed``."""
    value = get(config, "runtime.seed", run.attrs.get("seed"))
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
