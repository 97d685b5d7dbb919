"""FedAvg with a server-side global-magnitude re-cut every k rounds (a user-written method).

Every ``every`` rounds the server prunes the aggregated model by global magnitude, to a
sparsity that climbs linearly to ``sparsity`` at the last round; clients train under
the mask in between. Load it with ``plugins: [examples/recut_fedavg.py]`` (see
``recut_fedavg.yaml``) or ``--plugin examples/recut_fedavg.py``.

Settings (``algorithm.options``): ``every`` (k, default 2), ``sparsity`` (default 0.8).
"""

from __future__ import annotations

from hpc_fedprune.algorithms import Algorithm
from hpc_fedprune.errors import InputError
from hpc_fedprune.pruning.magnitude import global_magnitude_mask
from hpc_fedprune.registry import ALGORITHMS


@ALGORITHMS.register("recut_fedavg")
class RecutFedAvg(Algorithm):
    """FedAvg whose server re-cuts a nested global magnitude mask every k rounds."""

    name = "recut_fedavg"
    prunes = True  # keeps a global mask: the loop records it in /masks
    channels_within_mask = True  # clients train under the mask and send only within it

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        options = dict(self.config.algorithm.options or {})
        self.every = options.pop("every", 2)
        self.sparsity = options.pop("sparsity", 0.8)
        if options:
            raise InputError(
                f"algorithm.options: recut_fedavg has no option {sorted(options)[0]!r} "
                "(it takes every, sparsity)"
            )
        if not isinstance(self.every, int) or self.every < 1:
            raise InputError(f"algorithm.options.every: {self.every!r} is not an integer >= 1")
        if not isinstance(self.sparsity, (int, float)) or not 0 <= self.sparsity < 1:
            raise InputError(f"algorithm.options.sparsity: {self.sparsity!r} is not in [0, 1)")

    # plan_client and finish_client are FedAvg's (the base class): train under the global
    # mask, send the trained weights over it, add w_c - w_global to the "delta" channel.

    def server_prune(self, *, ctx, weights, sums, old):
        """Every k rounds: keep the largest |w| of the aggregate (old mask pruned first)."""
        if ctx.round % self.every != 0:
            return old
        target = self.sparsity * ctx.round / ctx.rounds
        return global_magnitude_mask(weights, self.prunable, target, current_mask=old)
