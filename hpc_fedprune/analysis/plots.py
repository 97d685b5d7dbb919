"""Plots of one run or of several runs side by side, as PNG, PDF or SVG.

matplotlib is an optional extra (``pip install 'hpc_fedprune[plot]'``), imported only when a
plot is drawn. Figures are built with ``matplotlib.figure.Figure`` directly rather than
pyplot: no global figure registry and no backend switching, so drawing here never disturbs
a user's own matplotlib session (a notebook, say).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from .masks import OVERALL, MaskHistory
from .summary import Quality
from .units import byte_unit

#: Printed when plots are skipped because matplotlib is missing.
PLOT_NOTE = "plots skipped: matplotlib is not installed (pip install 'hpc_fedprune[plot]')"

_DPI = 120
_SIZE = (7.5, 4.6)
# More runs than this and the legend moves beside the axes, where it hides no data.
_LEGEND_INSIDE_MAX = 5


def matplotlib_available() -> bool:
    """True when matplotlib can be imported."""
    try:
        _figure_class()
    except ImportError:
        return False
    return True


def _figure_class() -> Any:
    from matplotlib.figure import Figure

    return Figure


def _new_figure(size: tuple[float, float] = _SIZE, series: int = 1) -> Any:
    if series > _LEGEND_INSIDE_MAX:
        # The legend goes beside the axes: widen the figure so the axes keep their size.
        size = (size[0] + 3.0, size[1])
    return _figure_class()(figsize=size, layout="constrained")


#: The file formats a plot can be written in (``--format``).
FORMATS = ("png", "pdf", "svg")


def parse_formats(text: str | Sequence[str]) -> tuple[str, ...]:
    """``"png,pdf"`` -> ``("png", "pdf")``, checked against `FORMATS`.

    Raises
    ------
    InputError
        An unknown or empty format list.
    """
    items = text.split(",") if isinstance(text, str) else list(text)
    formats = tuple(dict.fromkeys(f.strip().lower().lstrip(".") for f in items if f.strip()))
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise InputError(
            f"--format: {', '.join(bad) or 'nothing given'}; choose from {', '.join(FORMATS)} "
            "(comma-separated, e.g. png,pdf)"
        )
    return formats


def _save(fig: Any, stem: Path, formats: Sequence[str]) -> list[Path]:
    """Write ``fig`` as ``stem.<format>`` for every format; return the files."""
    paths = []
    for fmt in formats:
        path = stem.with_name(f"{stem.name}.{fmt}")
        # No creation date in PDF and SVG files: the same run gives the same file.
        fig.savefig(path, dpi=_DPI, format=fmt, metadata=_METADATA.get(fmt))
        paths.append(path)
    return paths


_METADATA = {"pdf": {"CreationDate": None}, "svg": {"Date": None}}


@dataclass(frozen=True)
class Series:
    """One run's curve: metric values per round and the traffic behind them.

    Attributes
    ----------
    label : str
        Legend entry.
    rounds : numpy.ndarray
        Round numbers.
    values : numpy.ndarray
        Quality metric per round (NaN where not evaluated).
    cumulative_bytes : numpy.ndarray or None
        Client traffic up + down after each round.
    spread : numpy.ndarray or None
        For a group of runs over seeds: the standard deviation of ``values`` per round,
        drawn as a band of plus and minus one around the curve (``values`` is the mean).
    """

    label: str
    rounds: np.ndarray
    values: np.ndarray
    cumulative_bytes: np.ndarray | None = None
    spread: np.ndarray | None = None

    @property
    def has_values(self) -> bool:
        """True when at least one round was evaluated (there is a point to draw)."""
        return bool(np.isfinite(self.values).any())

    @property
    def has_bytes(self) -> bool:
        """True when the run recorded client traffic (the x axis of `quality_vs_bytes`)."""
        return self.cumulative_bytes is not None and bool(np.any(self.cumulative_bytes > 0))


def _scaled(q: Quality, values: np.ndarray) -> np.ndarray:
    # Accuracy reads better in percent; errors keep their own units.
    return 100.0 * values if q.higher_is_better and q.key == "test_accuracy" else values


def _y_label(q: Quality) -> str:
    if q.key == "test_accuracy":
        return "test accuracy (%)"
    return f"test {q.label} (target units, lower is better)"


def _round_axis(axis: Any, label: str = "round") -> None:
    """An x axis of round numbers: integer ticks only."""
    from matplotlib.ticker import MaxNLocator

    axis.set_major_locator(MaxNLocator(integer=True, steps=[1, 2, 2.5, 5, 10]))
    axis.set_label_text(label)


def _marker(n_points: int) -> str | None:
    return "o" if n_points <= 40 else None


def _legend(ax: Any, n: int) -> None:
    if n > _LEGEND_INSIDE_MAX:
        ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize="small")
    else:
        ax.legend(fontsize="small")


def quality_vs_round(
    stem: Path,
    series: Sequence[Series],
    quality: Quality,
    title: str,
    extra: Series | None = None,
    formats: Sequence[str] = ("png",),
) -> list[Path]:
    """Test accuracy (or MAE) against round, one line per series; returns the files.

    ``extra`` adds a dashed line (e.g. the clients' local test accuracy). A series with a
    ``spread`` gets a shaded band of one standard deviation around its mean.
    """
    fig = _new_figure(series=len(series) + (extra is not None))
    ax = fig.add_subplot()
    for s in [*series, *([extra] if extra is not None else [])]:
        ok = np.isfinite(s.values)
        style = "--" if s is extra else "-"
        (line,) = ax.plot(
            s.rounds[ok],
            _scaled(quality, s.values[ok]),
            style,
            marker=_marker(int(ok.sum())),
            markersize=3,
            label=s.label,
        )
        _band(ax, s.rounds[ok], s, ok, quality, line.get_color())
    _round_axis(ax.xaxis)
    ax.set_ylabel(_y_label(quality))
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    _legend(ax, len(series) + (extra is not None))
    return _save(fig, stem, formats)


def _band(ax: Any, x: np.ndarray, s: Series, ok: np.ndarray, quality: Quality, color: str) -> None:
    """Shade mean +- one standard deviation of a group's curve."""
    if s.spread is None:
        return
    mean, sd = s.values[ok], s.spread[ok]
    ax.fill_between(
        x,
        _scaled(quality, mean - sd),
        _scaled(quality, mean + sd),
        color=color,
        alpha=0.2,
        linewidth=0,
    )


def quality_vs_bytes(
    stem: Path,
    series: Sequence[Series],
    quality: Quality,
    title: str,
    final_points: Sequence[tuple[float, float]] | None = None,
    frontier: Sequence[bool] | None = None,
    formats: Sequence[str] = ("png",),
) -> list[Path]:
    """Test accuracy (or MAE) against cumulative client traffic, log x in kB/MB/GB.

    A series with a ``spread`` (a group over seeds) is drawn at its mean traffic with a
    band of one standard deviation of the metric.

    Parameters
    ----------
    final_points : sequence of (total_bytes, final_value), optional
        One per series: drawn as a dot at the end of each run.
    frontier : sequence of bool, optional
        Which final points form the Pareto frontier; drawn as stars joined by a step line
        (the best value reachable within each traffic budget).
    """
    fig = _new_figure(series=len(series) + (frontier is not None))
    ax = fig.add_subplot()
    largest = max(
        (float(np.nanmax(s.cumulative_bytes)) for s in series if s.has_bytes), default=1.0
    )
    unit, size = byte_unit(largest)
    for i, s in enumerate(series):
        if not s.has_bytes:
            continue
        assert s.cumulative_bytes is not None
        ok = np.isfinite(s.values) & (s.cumulative_bytes > 0)
        (line,) = ax.plot(
            s.cumulative_bytes[ok] / size,
            _scaled(quality, s.values[ok]),
            marker=_marker(int(ok.sum())),
            markersize=3,
            label=s.label,
        )
        _band(ax, s.cumulative_bytes[ok] / size, s, ok, quality, line.get_color())
        if final_points is not None:
            b, v = final_points[i]
            if np.isfinite(v) and b > 0:
                ax.plot(
                    [b / size],
                    [_scaled(quality, np.array([v]))[0]],
                    "o",
                    color=line.get_color(),
                    markersize=7,
                )
    if final_points is not None and frontier is not None and any(frontier):
        pts = sorted((b, v) for (b, v), on in zip(final_points, frontier, strict=True) if on)
        xs = np.array([b for b, _ in pts]) / size
        ys = _scaled(quality, np.array([v for _, v in pts]))
        ax.plot(xs, ys, "k--", drawstyle="steps-post", linewidth=1, zorder=1)
        ax.plot(
            xs,
            ys,
            "*",
            color="black",
            markersize=14,
            markerfacecolor="gold",
            zorder=3,
            label="Pareto frontier (final value vs total bytes)",
        )
    ax.set_xscale("log")
    _plain_log_ticks(ax.xaxis)
    ax.set_xlabel(f"cumulative client traffic, up + down ({unit}, log scale)")
    ax.set_ylabel(_y_label(quality))
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    _legend(ax, len(series) + (frontier is not None))
    return _save(fig, stem, formats)


def _plain_log_ticks(axis: Any) -> None:
    """Label a log axis 0.2, 0.5, 1, 2 ... instead of 2x10^-1: shorter, and no overlaps.

    How many in-between ticks get a label depends on how many decades the axis spans,
    decided at draw time from the axis limits.
    """
    from matplotlib.ticker import FuncFormatter

    def label(value: float, _pos: int) -> str:
        lo, hi = sorted(axis.get_view_interval())
        decades = np.log10(hi / lo) if lo > 0 else np.inf
        mantissa = round(value / 10 ** np.floor(np.log10(value) + 1e-9), 6) if value > 0 else 0
        if decades > 4:
            wanted: tuple[float, ...] = (1,)
        elif decades > 1.3:
            wanted = (1, 2, 5)
        else:
            wanted = (1, 2, 3, 4, 5, 6, 7, 8, 9)
        return f"{value:g}" if mantissa in wanted else ""

    axis.set_major_formatter(FuncFormatter(label))
    axis.set_minor_formatter(FuncFormatter(label))


def sparsity_heatmap(
    stem: Path, history: MaskHistory, title: str, formats: Sequence[str] = ("png",)
) -> list[Path]:
    """Sparsity of each prunable tensor (rows, model order) over the rounds.

    Round r occupies the x interval [r, r + 1) and shows the mask after round r.
    """
    n_tensors = len(history.tensors)
    height = max(min(2.0 + 0.22 * n_tensors, 18.0), 3.2)
    fig = _new_figure((8.0, height))
    ax = fig.add_subplot()
    # A record's mask holds until the next record (the simulator records only when the
    # mask may have changed), so each cell runs from its record to the next one, and the
    # last up to the end of the last completed round.
    rounds = history.rounds.astype(np.float64)
    edges = np.append(rounds, max(history.rounds_done, int(rounds[-1])) + 1)
    y = np.arange(n_tensors + 1) - 0.5
    mesh = ax.pcolormesh(
        edges, y, 100 * history.sparsity_matrix(), cmap="viridis", vmin=0, vmax=100
    )
    ax.set_yticks(np.arange(n_tensors))
    ax.set_yticklabels(history.tensors, fontsize=8 if n_tensors <= 30 else 6)
    ax.invert_yaxis()  # first layer on top, as in the model
    _round_axis(ax.xaxis)
    ax.set_ylabel("prunable tensor")
    ax.set_title(title)
    # A tall figure (many tensors) would stretch the colour bar to its full height.
    fig.colorbar(mesh, ax=ax, label="sparsity (% of weights pruned)", shrink=min(1.0, 6.0 / height))
    return _save(fig, stem, formats)


def mask_change_rate(
    stem: Path, history: MaskHistory, title: str, formats: Sequence[str] = ("png",)
) -> list[Path]:
    """Share of weights pruned and regrown at each mask record, as stacked bars.

    Bars rather than lines: rounds between two records had no change to show, and a line
    would draw one across them.
    """
    fig = _new_figure()
    ax = fig.add_subplot()
    stats = history.overall[1:]
    rounds = history.rounds[1:].astype(np.float64)
    numel = max(history.overall[0].numel, 1)
    pruned = np.array([s.pruned or 0 for s in stats], dtype=np.float64) / numel * 100
    regrown = np.array([s.regrown or 0 for s in stats], dtype=np.float64) / numel * 100
    gaps = np.diff(history.rounds)
    width = 0.8 * float(min(gaps.min(), 10)) if gaps.size else 0.8
    # Hundreds of records make bars narrower than a pixel: outline them so they still show.
    edge = {"linewidth": 0.6} if len(rounds) > 150 else {"linewidth": 0}
    ax.bar(rounds, pruned, width=width, color="tab:orange", edgecolor="tab:orange", **edge,
           label="pruned (kept before)")  # fmt: skip
    ax.bar(rounds, regrown, width=width, bottom=pruned, color="tab:green", edgecolor="tab:green",
           **edge, label="regrown (pruned before)")  # fmt: skip
    overall = history.summaries.get(OVERALL)
    if overall is not None and overall.stable_after_round is not None:
        ax.axvline(
            overall.stable_after_round + 0.5,
            color="grey",
            linewidth=1,
            linestyle="-.",
            label=f"unchanged after round {overall.stable_after_round}",
        )
    _round_axis(ax.xaxis, "round")
    ax.set_xlim(history.rounds[0] - 0.5, max(history.rounds_done, int(history.rounds[-1])) + 1)
    ax.set_ylabel("% of prunable weights")
    ax.set_title(title)
    top = float((pruned + regrown).max()) if pruned.size else 0.0
    ax.set_ylim(0, top * 1.1 if top > 0 else 1.0)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize="small")
    return _save(fig, stem, formats)
