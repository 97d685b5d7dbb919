"""The training engine: local training of clients on a rank's one model, alone or in groups.

`LocalTrainer` trains one client at a time, `GroupTrainer` several in one batched step,
`ClientTrainer` picks between them; `evaluate` scores the global model; `gradients` holds
the extra passes methods ask for (a client's gradient, training before round 1).
"""
