"""Entry functions behind ``hpc_fedprune analyze`` and ``hpc_fedprune compare``.

Each prints its result to stdout, writes CSVs (and plots, as PNG, PDF or SVG, when
matplotlib is installed) to an output folder, lists the files it wrote, and returns an exit
status. Bad input raises
`InputError`, which the command line turns into a one-line message and status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import EXIT_OK, InputError
from . import plots, tables
from .compare import pareto_front, render_compare_table, write_compare_csv, write_groups_csv
from .groups import group_series, make_row, seed_groups, seed_of
from .labels import distinct_labels, run_config
from .masks import MaskHistory, client_agreement, mask_history
from .privacy import privacy_lines, read_privacy, write_privacy_csv
from .runfile import Run, load_run
from .scores import write_layer_cost_csv
from .summary import Summary, quality_of, render_summary, summarize

#: Where `run_compare` writes when no folder is given (relative to the working directory;
#: not inside a runs folder, where a later ``compare runs/*`` would trip over it).
DEFAULT_COMPARE_DIR = "compare"


def add_analyze_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``RUN``, ``--out`` and ``--format`` to the ``analyze`` subcommand's parser."""
    parser.add_argument("run", metavar="RUN", help="run directory or its run.h5")
    parser.add_argument(
        "--out",
        metavar="DIR",
        default=None,
        help="folder for CSVs and plots (default: RUN/analysis/)",
    )
    _add_format(parser)


def add_compare_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``RUN RUN ...``, ``--out``, ``--format``, ``--labels`` and ``--no-groups``."""
    parser.add_argument("runs", metavar="RUN", nargs="+", help="run directories or run.h5 files")
    parser.add_argument(
        "--out",
        metavar="DIR",
        default=None,
        help=f"folder for the table and plots (default: ./{DEFAULT_COMPARE_DIR}/, which "
        "holds a .gitignore that keeps it out of git)",
    )
    _add_format(parser)
    parser.add_argument(
        "--labels",
        metavar="A,B,...",
        default=None,
        help="labels for the table and the legends, comma-separated, one per row (a group "
        "of seeds is one row); default: method names",
    )
    parser.add_argument(
        "--no-groups",
        action="store_true",
        help="one row and one curve per run, even for runs that differ only in the seed",
    )


def _add_format(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--format",
        metavar="FMT[,FMT]",
        default="png",
        help=f"plot file formats, comma-separated, from {', '.join(plots.FORMATS)} (default: png)",
    )


def _make_out_dir(out_dir: str | Path) -> Path:
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(
            f"{out}: cannot create the output folder ({e.strerror or e}); choose one with --out"
        ) from e
    return out


def _print_written(files: Sequence[Path], notes: Sequence[str]) -> None:
    for note in notes:
        print(note)
    print(f"wrote {len(files)} files:")
    for f in files:
        print(f"  {f}")


def _series(run: Run, label: str) -> plots.Series:
    q = quality_of(run)
    m = run.metrics
    n = run.num_rounds
    values = m.get(q.key, np.full(n, np.nan)).astype(np.float64)
    rounds = m.get("round", np.arange(1, n + 1))
    return plots.Series(label, rounds, values, tables.cumulative_bytes(m))


def run_analyze(path: str, out_dir: str | None = None, formats: str | Sequence[str] = "png") -> int:
    """Summarise one run, write its tables and plots, and print what was written.

    Parameters
    ----------
    path : str
        A run directory or its ``run.h5``.
    out_dir : str, optional
        Output folder; default ``<run dir>/analysis/``.
    formats : str or sequence of str
        Plot file formats: ``"png"``, ``"pdf"``, ``"svg"``, or several (``"png,pdf"``).

    Returns
    -------
    int
        Exit status (0).

    Raises
    ------
    InputError
        Missing or unreadable run file, a newer format, an unknown plot format, or an
        output folder that cannot be created.

    Notes
    -----
    Files: ``metrics.csv``, ``layer_cost.csv`` (parameters and FLOPs per layer, dense and
    after the last round); with masks ``mask_stats.csv``, ``mask_overall.csv``,
    ``mask_tensors.csv``; with client masks ``client_agreement.csv`` and
    ``client_keep_histogram.csv``; with membership-inference rows (``/privacy`` of the run
    file or ``privacy.h5`` beside it) ``privacy.csv``; with matplotlib, in each format,
    ``accuracy_vs_round`` and ``accuracy_vs_bytes`` (once a round was evaluated) and, with
    masks, ``sparsity_heatmap`` and ``mask_change_rate``. A plot with nothing to show is
    not written; a line says why.
    """
    fmts = plots.parse_formats(formats)
    run = load_run(path)
    summary = summarize(run)
    history = mask_history(run)
    agreement = client_agreement(run)
    attacks = read_privacy(run.path)
    print(render_summary(summary, history, agreement, privacy_lines(attacks)))
    print()

    out = _make_out_dir(out_dir if out_dir is not None else run.run_dir / "analysis")
    files: list[Path] = [tables.write_metrics_csv(out / "metrics.csv", run)]
    notes: list[str] = []
    costs = run.layer_costs()
    if costs is not None:
        files.append(write_layer_cost_csv(out / "layer_cost.csv", costs))
    if history is not None:
        files.append(tables.write_mask_stats_csv(out / "mask_stats.csv", history))
        files.append(tables.write_mask_overall_csv(out / "mask_overall.csv", history))
        files.append(tables.write_mask_tensors_csv(out / "mask_tensors.csv", history))
    else:
        notes.append("no mask records in this run (its method does not prune): no mask tables")
    if attacks:
        files.append(write_privacy_csv(out / "privacy.csv", attacks))
    if agreement:
        files.append(tables.write_client_agreement_csv(out / "client_agreement.csv", agreement))
        files.append(
            tables.write_client_keep_histogram_csv(out / "client_keep_histogram.csv", agreement)
        )

    if plots.matplotlib_available():
        files.extend(_analyze_plots(run, summary, history, out, notes, fmts))
    else:
        notes.append(plots.PLOT_NOTE)
    _print_written(files, notes)
    return EXIT_OK


def _analyze_plots(
    run: Run,
    s: Summary,
    history: MaskHistory | None,
    out: Path,
    notes: list[str],
    formats: Sequence[str],
) -> list[Path]:
    files: list[Path] = []
    q = s.quality
    what = f"{s.method} on {s.dataset} ({s.model})"
    series = _series(run, "global model, test set")
    if run.num_rounds == 0:
        notes.append("no completed rounds yet: no metric plots")
    elif not series.has_values:
        notes.append(
            f"no round evaluated yet (test {q.label} is NaN in every round): no metric plots"
        )
    else:
        local = None
        if q.key == "test_accuracy" and "local_test_accuracy" in run.metrics:
            local = plots.Series(
                "local test accuracy (clients' own data)",
                series.rounds,
                run.metrics["local_test_accuracy"].astype(np.float64),
            )
        files += plots.quality_vs_round(
            out / "accuracy_vs_round",
            [series],
            q,
            f"{what}: test {q.label} by round",
            extra=local if local is not None and local.has_values else None,
            formats=formats,
        )
        if series.has_bytes:
            files += plots.quality_vs_bytes(
                out / "accuracy_vs_bytes",
                [series],
                q,
                f"{what}: test {q.label} by client traffic",
                formats=formats,
            )
        else:
            notes.append("no client traffic recorded: no accuracy-vs-bytes plot")
    if history is not None:
        files += plots.sparsity_heatmap(
            out / "sparsity_heatmap", history, f"{what}: sparsity per tensor", formats=formats
        )
        if len(history.rounds) > 1:
            files += plots.mask_change_rate(
                out / "mask_change_rate",
                history,
                f"{what}: mask changes since the previous record",
                formats=formats,
            )
        else:
            notes.append("only one mask record: no mask change plot")
    return files


def _unique_labels(runs: Sequence[Run]) -> list[str]:
    """Run directory names, lengthened with parent folders until they differ."""
    parts = [r.run_dir.resolve().parts for r in runs]
    for depth in range(1, max(len(p) for p in parts) + 1):
        labels = ["/".join(p[-depth:]) for p in parts]
        if len(set(labels)) == len(labels):
            return labels
    return [str(r.path) for r in runs]


def _user_labels(text: str | Sequence[str] | None, rows: int) -> list[str] | None:
    if text is None:
        return None
    labels = [x.strip() for x in text.split(",")] if isinstance(text, str) else list(text)
    if len(labels) != rows:
        raise InputError(
            f"--labels: {len(labels)} label(s) for {rows} row(s) of the comparison (runs "
            "that differ only in the seed make one row; --no-groups shows every run)"
        )
    return labels


def run_compare(
    paths: list[str],
    out_dir: str | None = None,
    formats: str | Sequence[str] = "png",
    labels: str | Sequence[str] | None = None,
    groups: bool = True,
) -> int:
    """Compare runs: print one table, write it as CSV, and draw overlaid plots.

    Parameters
    ----------
    paths : list of str
        Run directories or ``run.h5`` files (at least one).
    out_dir : str, optional
        Output folder; default ``./compare/`` (with a ``.gitignore`` that keeps it out of
        git).
    formats : str or sequence of str
        Plot file formats (``"png,pdf,svg"``).
    labels : str or sequence of str, optional
        One label per row of the table (comma-separated in a string); default: method
        names, lengthened with the settings in which same-named runs differ.
    groups : bool
        Take runs whose configs differ only in ``runtime.seed`` together (one row: mean
        and sample standard deviation over the seeds; one curve with a shaded band).

    Returns
    -------
    int
        Exit status (0).

    Raises
    ------
    InputError
        No paths, an unreadable run, runs that mix classification and regression, labels
        that do not match the rows, an unknown plot format, or an output folder that
        cannot be created.

    Notes
    -----
    Files: ``compare.csv`` (one line per run); ``compare_groups.csv`` when a row holds
    several seeds; with matplotlib, in each format, ``compare_accuracy_vs_round`` and
    ``compare_accuracy_vs_bytes`` (the Pareto frontier of final accuracy against total
    bytes marked with stars). Runs never evaluated are left out of the plots.
    """
    if not paths:
        raise InputError("compare needs at least one run")
    fmts = plots.parse_formats(formats)
    runs = [load_run(p) for p in paths]
    qualities = {quality_of(r) for r in runs}
    if len(qualities) > 1:
        raise InputError(
            "cannot compare classification runs (accuracy) with regression runs (MAE): "
            + ", ".join(f"{p} is {quality_of(r).label}" for p, r in zip(paths, runs, strict=True))
        )
    names = _unique_labels(runs)
    summaries = [
        dataclasses.replace(summarize(r), name=n) for r, n in zip(runs, names, strict=True)
    ]
    configs = [run_config(r) for r in runs]
    seeds = [seed_of(r, c) for r, c in zip(runs, configs, strict=True)]
    members, notes = seed_groups(configs, seeds, names, enabled=groups)
    row_labels = _user_labels(labels, len(members)) or distinct_labels(
        [summaries[g[0]].method for g in members],
        [configs[g[0]] for g in members],
        [names[g[0]] for g in members],
    )
    rows = [
        make_row(label, [summaries[i] for i in g])
        for label, g in zip(row_labels, members, strict=True)
    ]
    q = summaries[0].quality
    front = pareto_front(
        [r.final[0] for r in rows],
        [r.mean("bytes_total") for r in rows],
        q.higher_is_better,
    )
    by_path = {s.path: n for s, n in zip(summaries, names, strict=True)}
    print(render_compare_table(rows, front, by_path))
    datasets = sorted({s.dataset for s in summaries})
    if len(datasets) > 1:
        notes.append(f"note: the runs use different data sets ({', '.join(datasets)})")
    print()

    out = _make_out_dir(out_dir if out_dir is not None else DEFAULT_COMPARE_DIR)
    if out_dir is None:
        _keep_out_of_git(out)
    files = [write_compare_csv(out / "compare.csv", rows, front, by_path)]
    if any(r.n > 1 for r in rows):
        files.append(write_groups_csv(out / "compare_groups.csv", rows, front))
    if plots.matplotlib_available():
        series = [
            group_series([runs[i] for i in g], row.label, q.key)
            for g, row in zip(members, rows, strict=True)
        ]
        files += _compare_plots(series, rows, front, q, datasets, out, fmts, notes)
    else:
        notes.append(plots.PLOT_NOTE)
    _print_written(files, notes)
    return EXIT_OK


def _compare_plots(
    series: list[plots.Series],
    rows: list,
    front: np.ndarray,
    q,
    datasets: list[str],
    out: Path,
    formats: Sequence[str],
    notes: list[str],
) -> list[Path]:
    """The overlaid plots, leaving out rows with nothing to draw (and saying so)."""
    keep = [i for i, s in enumerate(series) if s.has_values]
    for s in series:
        if not s.has_values:
            notes.append(f"{s.label}: no evaluated round yet, left out of the plots")
    if not keep:
        notes.append("no run has an evaluated round yet: no plots")
        return []
    title_data = datasets[0] if len(datasets) == 1 else "several data sets"
    files = plots.quality_vs_round(
        out / "compare_accuracy_vs_round",
        [series[i] for i in keep],
        q,
        f"{title_data}: test {q.label} by round",
        formats=formats,
    )
    with_bytes = [i for i in keep if series[i].has_bytes]
    if not with_bytes:
        notes.append("no client traffic recorded: no accuracy-vs-bytes plot")
        return files
    files += plots.quality_vs_bytes(
        out / "compare_accuracy_vs_bytes",
        [series[i] for i in with_bytes],
        q,
        f"{title_data}: test {q.label} by client traffic",
        final_points=[(rows[i].mean("bytes_total"), rows[i].final[0]) for i in with_bytes],
        frontier=[bool(front[i]) for i in with_bytes],
        formats=formats,
    )
    return files


def _keep_out_of_git(folder: Path) -> None:
    """A ``.gitignore`` of ``*`` in the default output folder: results stay out of commits."""
    marker = folder / ".gitignore"
    if not marker.exists():
        try:
            marker.write_text("# written by hpc_fedprune compare: keep its output out of git\n*\n")
        except OSError:
            pass  # a read-only folder would already have failed to take the results
