"""hpc_fedprune: an MPI simulator of federated learning with model pruning."""

__version__ = "0.1.0"
