"""What crosses between clients, ranks and the server, and what it costs.

`ExactAccumulator` sums client contributions exactly inside a rank; `accounting` measures
the simulated client traffic from the encodings and moves the sums and the new global
model between ranks through `hpc_fedprune.comm`.
"""
