"""The start-up check that a run is long enough for its method's target sparsity.

Schedules do not all scale with ``federation.rounds``: FedSparsify's cubic schedule ends at
the run's last round by default, while FedDIP and PruneFL prune only every
``reconfig_interval`` rounds and an explicit ``end_round`` stays where it is set. So a
shortened run (a quick test with ``federation.rounds=5``) can end far from the target
sparsity. Each pruning method says what its schedule reaches by the last round
(`Algorithm.sparsity_reached`); rank 0 prints one warning line when that is below the
target. Nothing is changed: the run goes on as configured.
"""

from __future__ import annotations

import sys

TOLERANCE = 1e-6  # a schedule that ends at its target reaches it up to rounding


def unreached_target(algorithm, rounds: int) -> str | None:
    """The warning line for ``algorithm`` over ``rounds`` rounds, or None when it reaches
    its target (or has no schedule)."""
    reached = algorithm.sparsity_reached(rounds)
    if reached is None:
        return None
    sparsity, target = reached
    if sparsity >= target - TOLERANCE:
        return None
    return (
        f"warning: {algorithm.name}'s schedule reaches sparsity {sparsity:.6g} by round "
        f"{rounds} (federation.rounds), not its target {target:.6g}: the run ends before "
        f"the schedule of algorithm.{algorithm.name} does"
    )


def warn_unreached_target(algorithm, rounds: int, is_root: bool) -> str | None:
    """Rank 0: print `unreached_target`'s line on stderr, if any; returns it."""
    line = unreached_target(algorithm, rounds) if is_root else None
    if line is not None:
        print(line, file=sys.stderr, flush=True)
    return line
