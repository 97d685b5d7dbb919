"""hpc_fedprune: an MPI simulator of federated learning with model pruning.

The Python API (see the README's "Python API"):

- `run` runs an experiment in this process (on every rank of MPI when under mpiexec) and
  returns a `RunOutcome`: the run directory, the last round, its metrics;
- `load_run` reads a run file: the metrics as columns, ``to_pandas()``, masks, the model;
- `InputError` is what bad input raises (the command line's exit status 2).

Importing the package imports none of torch, mpi4py or h5py: `run`, `RunOutcome` and
`load_run` are loaded on first use.
"""

from .errors import InputError, StorageError

__version__ = "0.1.0"

__all__ = ["InputError", "RunOutcome", "StorageError", "load_run", "run"]

# Name -> module that defines it, imported on first access (PEP 562).
_LAZY = {
    "run": ".api",
    "RunOutcome": ".api",
    "load_run": ".analysis.runfile",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
