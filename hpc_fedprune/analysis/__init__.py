"""Offline analysis of run files: summaries, mask statistics, tables and plots.

Imports only numpy and h5py (matplotlib lazily, for plots), never torch or mpi4py, so it
starts fast and runs on a laptop with a copy of ``run.h5``.

>>> from hpc_fedprune.analysis import load_run, summarize, mask_history
>>> run = load_run("runs/demo")                    # doctest: +SKIP
>>> print(render_summary(summarize(run)))          # doctest: +SKIP
"""

from .cli import (
    add_analyze_arguments,
    add_compare_arguments,
    run_analyze,
    run_compare,
)
from .compare import pareto_front
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
from .summary import Summary, render_summary, summarize

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
    "add_analyze_arguments",
    "add_compare_arguments",
    "client_agreement",
    "load_run",
    "mask_history",
    "pareto_front",
    "render_summary",
    "run_analyze",
    "run_compare",
    "summarize",
]
