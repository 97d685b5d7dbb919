"""Driving an algorithm through the per-client contract, as the round loop does.

The loop's own pieces are used where they carry a rule (the exact accumulator applies
the sample weights), so a test of a method checks the method, not a copy of the loop.
"""

from __future__ import annotations

from dataclasses import replace

from hpc_fedprune.algorithms import GlobalModel
from hpc_fedprune.exchange.accumulate import ExactAccumulator


def run_client(algo, ctx, model, client, local, *, gradient=None, state=None):
    """``plan_client`` then ``finish_client`` for one trained client: (plan, update).

    A plan with a readjustment is readjusted at ``local`` with ``gradient`` (as if the
    last epoch changed nothing); use `readjust` and `finish` to train after it.
    """
    plan = algo.plan_client(ctx=ctx, model=model, client=client, state=state)
    if plan.readjust is not None:
        plan = readjust(plan, local, gradient)
        gradient = None
    return plan, finish(algo, ctx, model, client, plan, local, gradient=gradient, state=state)


def readjust(plan, weights, gradient):
    """What the trainer does with ``plan.readjust`` before the last local epoch: the new
    train mask, applied to ``weights`` in place; returns the plan as trained."""
    new = plan.readjust(weights, gradient, plan.train_mask)
    weights.mul_(new)
    return replace(plan, train_mask=new)


def finish(algo, ctx, model, client, plan, local, *, gradient=None, state=None):
    """``finish_client`` for a client trained as ``plan`` says; its `ClientUpdate`."""
    return algo.finish_client(
        ctx=ctx, model=model, client=client, plan=plan, local=local, gradient=gradient,
        state=state,
    )  # fmt: skip


def sums_of(algo, updates, weights, ctx=None):
    """The server's exact sums of ``updates`` with sample weights ``weights``.

    With ``ctx``, only the round's channels (`Algorithm.round_channels`), as the loop does.
    """
    numel = updates[0].message.numel()
    channels = algo.channels if ctx is None else algo.round_channels(ctx)
    acc = ExactAccumulator.for_channels(channels, numel, len(updates), "cpu")
    for update, weight in zip(updates, weights, strict=True):
        acc.add_client(update.channels, algo.channels, weight)
    return acc.unpack(acc.packed(), "cpu")


def server_step(algo, ctx, sums, model: GlobalModel, server=None):
    """One server step (a fresh server state unless given); returns the `ServerResult`."""
    if server is None:
        server = algo.new_server(weights=model.weights, mask=model.mask)
    return algo.server_step(ctx=ctx, sums=sums, model=model, server=server)
