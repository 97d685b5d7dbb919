"""The run directory and its HDF5 run file: written by rank 0, readable with plain h5py."""

from .rundir import RunDir
from .runfile import FORMAT_VERSION, RunFile

__all__ = ["FORMAT_VERSION", "RunDir", "RunFile"]
