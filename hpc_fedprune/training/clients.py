"""Which clients a rank trains in a round, and their local training: alone or in groups.

`ClientTrainer` is what the round loop talks to. With ``training.group_size`` 1 (the
default), or when `grouped.group_blocker` finds something a group cannot do, it is exactly
the one-client-at-a-time path: `cohort.schedule_cohort` and `LocalTrainer.train`. Otherwise
the cohort is cut into groups (`cohort.form_groups`, from ids and sizes only), whole groups
are scheduled to ranks (`cohort.schedule_groups`), and the first `train` call for a member
of a group trains the whole group with `GroupTrainer`; every call then loads that client's
trained weights into the model's flat buffer and returns its result, so the loop's
per-client code after training runs unchanged.
"""

from __future__ import annotations

import numpy as np
import torch

from ..sim.cohort import form_groups, schedule_cohort, schedule_groups
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
    algorithm : Algorithm
        The run's method (whether its hooks allow groups).
    train_parts : list of numpy.ndarray
        Every client's training sample indices.
    announce : bool
        Print the grouping decision (rank 0).
    """

    def __init__(
        self, trainer: LocalTrainer, config, algorithm, train_parts, *, announce: bool = False
    ) -> None:
        self.trainer = trainer
        self.parts = train_parts
        self.group_size = config.training.group_size
        self.group: GroupTrainer | None = None
        if self.group_size > 1:
            reason = group_blocker(config, trainer.model, algorithm)
            if reason is None:
                self.group = GroupTrainer(trainer.model, config, trainer.task, trainer.x, trainer.y)
                message = f"grouped training: up to {self.group_size} clients per batched step"
            else:
                message = f"grouped training off ({reason}): one client at a time"
            if announce:
                print(message, flush=True)
        self.groups_of: dict[int, np.ndarray] = {}  # client -> its group, this round
        self.trained: dict[int, tuple[torch.Tensor, ClientResult]] = {}

    @property
    def grouped(self) -> bool:
        """Whether clients are trained in groups."""
        return self.group is not None

    def schedule(self, cohort: np.ndarray, sizes: np.ndarray, world_size: int, rank: int):
        """This rank's clients of the round (group by group when grouped)."""
        if self.group is None:
            return schedule_cohort(cohort, sizes, world_size)[rank]
        mine = schedule_groups(form_groups(cohort, sizes, self.group_size), sizes, world_size)
        self.groups_of = {int(c): group for group in mine[rank] for c in group.tolist()}
        self.trained.clear()
        return np.concatenate(mine[rank]) if mine[rank] else np.zeros(0, dtype=np.int64)

    def train(self, **kwargs) -> ClientResult:
        """Train one client; same arguments and effect as `LocalTrainer.train`.

        Grouped: trains the client's whole group on its first member's call (every member
        starts from ``start`` under ``mask``), then loads this client's weights.
        """
        if self.group is None:
            return self.trainer.train(**kwargs)
        client = kwargs["client"]
        if kwargs.get("forward_mask") is not None:
            raise RuntimeError("grouped training got a forward mask; group_blocker missed it")
        if client not in self.trained:
            members = self.groups_of[client].tolist()
            weights, results = self.group.train(
                clients=members,
                round_index=kwargs["round_index"],
                parts=[self.parts[c] for c in members],
                start=kwargs["start"],
                mask=kwargs["mask"],
                lr=kwargs["lr"],
                algorithm=kwargs["algorithm"],
                key=kwargs.get("key", ()),
            )
            for j, c in enumerate(members):
                self.trained[c] = (weights[j], results[j])
        weights, result = self.trained.pop(client)
        self.trainer.model.load_(weights)
        return result
