"""Offline analysis of run files: summaries, mask statistics, tables and plots.

Imports only numpy and h5py (matplotlib lazily, for plots), never torch or mpi4py, so it
starts fast and runs on a laptop with a copy of ``run.h5``.

>>> from hpc_fedprune.analysis import load_run, summarize, mask_history
>>> run = load_run("runs/demo")                    # doctest: +SKIP
>>> print(render_summary(summarize(run)))          # doctest: +SKIP
>>> traffic_of(run.metrics).traffic_vs_dense       # doctest: +SKIP
"""

from .cli import (
    add_analyze_arguments,
    add_compare_arguments,
    run_analyze,
    run_compare,
)
from .compare import pareto_front
from .figures import Traffic, traffic_of
from .masks import (
    OVERALL,
    ClientAgreement,
    MaskHistory,
    MaskRecordStats,
    MaskTensorSummary,
    client_agreement,
    mask_history,
)
from .runfile import (
    SUPPORTED_FORMAT_VERSION,
    ClientMaskRound,
    MaskRecord,
    MaskTensor,
    Run,
    load_run,
)
from .summary import Summary, end_of_run_line, render_summary, summarize

__all__ = [
    "OVERALL",
    "SUPPORTED_FORMAT_VERSION",
    "ClientAgreement",
    "ClientMaskRound",
    "MaskHistory",
    "MaskRecord",
    "MaskRecordStats",
    "MaskTensor",
    "MaskTensorSummary",
    "Run",
    "Summary",
    "Traffic",
    "add_analyze_arguments",
    "add_compare_arguments",
    "client_agreement",
    "end_of_run_line",
    "load_run",
    "mask_history",
    "pareto_front",
    "render_summary",
    "run_analyze",
    "run_compare",
    "summarize",
    "traffic_of",
]
