"""Which clients a rank trains in a round, and their local training: alone or in groups.

`ClientTrainer` is what the round loop talks to. The rank's clients of a round come as
*units* (`hpc_fedprune.sim.cohort.rank_units`): with ``training.group_size`` 1 (the
default), or when `grouped.group_blocker` finds something in the model or optimiser that
a group cannot do, every unit is one client, trained by `LocalTrainer`. Otherwise units
are groups cut from the cohort by ids and sizes only, and the members of a group whose
plans allow it
(`ClientPlan.groupable`) train together in one batched step (`GroupTrainer`); a member
whose plan does not trains alone. Either way `train` hands back one client at a time with
its trained weights in the model's flat buffer, so the loop's per-client code after
training is the same.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np
import torch

from .grouped import GroupTrainer, group_blocker
from .local import ClientResult, LocalTrainer


class ClientTrainer:
    """The rank's local training: `LocalTrainer` alone, or `GroupTrainer` in groups.

    Parameters
    ----------
    trainer : LocalTrainer
        The one-client-at-a-time trainer (its model and data are shared).
    config : Config
        Resolved run config (``training.group_size``).
    train_parts : list of numpy.ndarray
        Every client's training sample indices.
    announce : bool
        Print the grouping decision (rank 0).
    """

    def __init__(self, trainer: LocalTrainer, config, train_parts, *, announce: bool = False):
        self.trainer = trainer
        self.parts = train_parts
        self.group_size = config.training.group_size
        self.group: GroupTrainer | None = None
        if self.group_size > 1:
            reason = group_blocker(config, trainer.model)
            if reason is None:
                self.group = GroupTrainer(trainer.model, config, trainer.task, trainer.x, trainer.y)
                message = f"grouped training: up to {self.group_size} clients per batched step"
            else:
                message = f"grouped training off ({reason}): one client at a time"
            if announce:
                print(message, flush=True)

    @property
    def unit_size(self) -> int:
        """Clients per training unit: ``training.group_size`` when grouped, else 1."""
        return self.group_size if self.group is not None else 1

    def train(
        self,
        *,
        unit: np.ndarray,
        plans: Mapping[int, object],
        round_index: int,
        start: torch.Tensor,
        lr: float,
    ) -> Iterator[tuple[int, ClientResult]]:
        """Train the clients of ``unit`` from ``start``, each as its plan says.

        Yields ``(client, result)`` in the unit's order, with that client's trained weights
        in the model's flat buffer until the next item is taken.
        """
        members = [int(c) for c in unit]
        trained: dict[int, tuple[torch.Tensor, ClientResult]] = {}
        together = [c for c in members if groups_with(plans[c])] if self.group else []
        if together:
            weights, results = self.group.train(
                clients=together,
                round_index=round_index,
                parts=[self.parts[c] for c in together],
                start=start,
                plans=[plans[c] for c in together],
                lr=lr,
            )
            trained = {c: (weights[j], results[j]) for j, c in enumerate(together)}
        for client in members:
            if client in trained:
                weights, result = trained.pop(client)
                self.trainer.model.load_(weights)
            else:
                result = self.trainer.train(
                    client=client,
                    round_index=round_index,
                    indices=self.parts[client],
                    start=start,
                    plan=plans[client],
                    lr=lr,
                )
            yield client, result


def groups_with(plan) -> bool:
    """Whether a client may train in a group: its plan allows it and changes no mask in
    the middle of training (a readjustment runs on the one-client trainer)."""
    return plan.groupable and plan.readjust is None
