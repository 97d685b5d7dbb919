"""Entry functions behind ``hpc_fedprune analyze`` and ``hpc_fedprune compare``.

Each prints its result to stdout, writes CSVs (and PNGs when matplotlib is installed) to an
output folder, lists the files it wrote, and returns an exit status. Bad input raises
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
from .compare import pareto_front, render_compare_table, write_compare_csv
from .masks import MaskHistory, client_agreement, mask_history
from .privacy import privacy_lines, read_privacy, write_privacy_csv
from .runfile import Run, load_run
from .scores import read_layer_costs, write_layer_cost_csv
from .summary import Summary, quality_of, render_summary, summarize

#: Where `run_compare` writes when no folder is given (relative to the working directory;
#: not inside a runs folder, where a later ``compare runs/*`` would trip over it).
DEFAULT_COMPARE_DIR = "compare"


def add_analyze_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``RUN`` and ``--out`` to the ``analyze`` subcommand's parser."""
    parser.add_argument("run", metavar="RUN", help="run directory or its run.h5")
    parser.add_argument(
        "--out",
        metavar="DIR",
        default=None,
        help="folder for CSVs and plots (default: RUN/analysis/)",
    )


def add_compare_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``RUN RUN ...`` and ``--out`` to the ``compare`` subcommand's parser."""
    parser.add_argument("runs", metavar="RUN", nargs="+", help="run directories or run.h5 files")
    parser.add_argument(
        "--out",
        metavar="DIR",
        default=None,
        help=f"folder for the table and plots (default: ./{DEFAULT_COMPARE_DIR}/)",
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


def run_analyze(path: str, out_dir: str | None = None) -> int:
    """Summarise one run, write its tables and plots, and print what was written.

    Parameters
    ----------
    path : str
        A run directory or its ``run.h5``.
    out_dir : str, optional
        Output folder; default ``<run dir>/analysis/``.

    Returns
    -------
    int
        Exit status (0).

    Raises
    ------
    InputError
        Missing or unreadable run file, a newer format, or an output folder that cannot be
        created.

    Notes
    -----
    Files: ``metrics.csv``, ``layer_cost.csv`` (parameters and FLOPs per layer, dense and
    after the last round); with masks ``mask_stats.csv``, ``mask_overall.csv``,
    ``mask_tensors.csv``; with client masks ``client_agreement.csv`` and
    ``client_keep_histogram.csv``; with membership-inference rows (``/privacy`` of the run
    file or ``privacy.h5`` beside it) ``privacy.csv``; with matplotlib ``accuracy_vs_round.png``,
    ``accuracy_vs_bytes.png`` and, with masks, ``sparsity_heatmap.png`` and
    ``mask_change_rate.png``.
    """
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
    costs = read_layer_costs(run.path)
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
        files.extend(_analyze_plots(run, summary, history, out, notes))
    else:
        notes.append(plots.PLOT_NOTE)
    _print_written(files, notes)
    return EXIT_OK


def _analyze_plots(
    run: Run, s: Summary, history: MaskHistory | None, out: Path, notes: list[str]
) -> list[Path]:
    files: list[Path] = []
    q = s.quality
    what = f"{s.algorithm} on {s.dataset} ({s.model})"
    series = _series(run, "global model, test set")
    if run.num_rounds == 0:
        notes.append("no completed rounds yet: no metric plots")
    else:
        local = None
        if q.key == "test_accuracy" and "local_test_accuracy" in run.metrics:
            local = plots.Series(
                "local test accuracy (clients' own data)",
                series.rounds,
                run.metrics["local_test_accuracy"].astype(np.float64),
            )
        files.append(
            plots.quality_vs_round(
                out / "accuracy_vs_round.png",
                [series],
                q,
                f"{what}: test {q.label} by round",
                extra=local,
            )
        )
        if series.cumulative_bytes is not None:
            files.append(
                plots.quality_vs_bytes(
                    out / "accuracy_vs_bytes.png",
                    [series],
                    q,
                    f"{what}: test {q.label} by client traffic",
                )
            )
    if history is not None:
        files.append(
            plots.sparsity_heatmap(
                out / "sparsity_heatmap.png", history, f"{what}: sparsity per tensor"
            )
        )
        if len(history.rounds) > 1:
            files.append(
                plots.mask_change_rate(
                    out / "mask_change_rate.png",
                    history,
                    f"{what}: mask changes since the previous record",
                )
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


def run_compare(paths: list[str], out_dir: str | None = None) -> int:
    """Compare runs: print one table, write it as CSV, and draw overlaid plots.

    Parameters
    ----------
    paths : list of str
        Run directories or ``run.h5`` files (at least one).
    out_dir : str, optional
        Output folder; default ``./compare/``.

    Returns
    -------
    int
        Exit status (0).

    Raises
    ------
    InputError
        No paths, an unreadable run, runs that mix classification and regression, or an
        output folder that cannot be created.

    Notes
    -----
    Files: ``compare.csv``; with matplotlib ``compare_accuracy_vs_round.png`` and
    ``compare_accuracy_vs_bytes.png`` (the Pareto frontier of final accuracy against total
    bytes marked with stars).
    """
    if not paths:
        raise InputError("compare needs at least one run")
    runs = [load_run(p) for p in paths]
    qualities = {quality_of(r) for r in runs}
    if len(qualities) > 1:
        raise InputError(
            "cannot compare classification runs (accuracy) with regression runs (MAE): "
            + ", ".join(f"{p} is {quality_of(r).label}" for p, r in zip(paths, runs, strict=True))
        )
    labels = _unique_labels(runs)
    summaries = [
        dataclasses.replace(summarize(r), name=n) for r, n in zip(runs, labels, strict=True)
    ]
    q = summaries[0].quality
    front = pareto_front(
        [s.final for s in summaries], [s.bytes_total for s in summaries], q.higher_is_better
    )
    print(render_compare_table(summaries, front))
    notes: list[str] = []
    datasets = sorted({s.dataset for s in summaries})
    if len(datasets) > 1:
        notes.append(f"note: the runs use different data sets ({', '.join(datasets)})")
    print()

    out = _make_out_dir(out_dir if out_dir is not None else DEFAULT_COMPARE_DIR)
    files = [write_compare_csv(out / "compare.csv", summaries, front)]
    if plots.matplotlib_available():
        series = [
            _series(r, f"{s.name} ({s.algorithm})") for r, s in zip(runs, summaries, strict=True)
        ]
        title_data = datasets[0] if len(datasets) == 1 else "several data sets"
        files.append(
            plots.quality_vs_round(
                out / "compare_accuracy_vs_round.png",
                series,
                q,
                f"{title_data}: test {q.label} by round",
            )
        )
        files.append(
            plots.quality_vs_bytes(
                out / "compare_accuracy_vs_bytes.png",
                series,
                q,
                f"{title_data}: test {q.label} by client traffic",
                final_points=[(s.bytes_total, s.final) for s in summaries],
                frontier=[bool(f) for f in front],
            )
        )
    else:
        notes.append(plots.PLOT_NOTE)
    _print_written(files, notes)
    return EXIT_OK
