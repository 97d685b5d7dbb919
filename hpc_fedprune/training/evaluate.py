"""Evaluation of the global model, split over ranks, with exact order-free totals.

The test set is cut into fixed batches (independent of the world size); batch b is
evaluated by rank ``b % size``. Per-sample losses are turned into fixed point and summed
as integers, so the reported loss and accuracy are the same bits for any rank count.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..comm.exact import to_fixed
from .samples import client_samples

LOSS_BITS = 24  # resolution of per-sample losses in the exact sum (2**-24)


@torch.no_grad()
def evaluate(
    flat_model,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    task: str,
    batch_size: int,
    world,
    indices: np.ndarray | None = None,
) -> dict[str, float]:
    """Accuracy (or MAE) and mean loss of the model in ``flat_model`` on (x, y).

    Parameters
    ----------
    flat_model : FlatModel
        Holds the weights to evaluate.
    x, y : torch.Tensor
        Evaluation data on the rank's device.
    task : {'classification', 'regression'}
    batch_size : int
    world : World or None
        Ranks share the batches; None evaluates everything here.
    indices : numpy.ndarray, optional
        Evaluate only these samples.

    Returns
    -------
    dict
        ``{'accuracy' or 'mae': ..., 'loss': ...}`` identical on every rank.
    """
    model = flat_model.module
    model.eval()
    n = len(y) if indices is None else len(indices)
    rank, size = (0, 1) if world is None else (world.rank, world.size)
    # totals: [correct or abs-error (fixed point), loss (fixed point), samples]
    totals = np.zeros(3, dtype=np.int64)
    for b, lo in enumerate(range(0, n, batch_size)):
        if b % size != rank:
            continue
        sel = slice(lo, min(lo + batch_size, n))
        rows = np.arange(sel.start, sel.stop) if indices is None else indices[sel]
        if indices is not None:
            sel = torch.as_tensor(indices[sel], device=x.device)
        out = model(client_samples(x, rows)[sel])
        target = y[sel]
        if task == "classification":
            losses = F.cross_entropy(out, target, reduction="none")
            totals[0] += int((out.argmax(1) == target).sum())
        else:
            pred = out.reshape(-1)
            losses = F.mse_loss(pred, target, reduction="none")
            err = (pred - target).abs().double().cpu().numpy()
            totals[0] += int(to_fixed(err, cohort_size=max(n, 1), frac_bits=LOSS_BITS).sum())
        loss_fixed = to_fixed(
            losses.double().cpu().numpy(), cohort_size=max(n, 1), frac_bits=LOSS_BITS
        )
        totals[1] += int(loss_fixed.sum())
        totals[2] += len(target)
    model.train()
    if world is not None:
        totals = world.sum_int64(totals)
    count = max(int(totals[2]), 1)
    loss = float(totals[1]) / 2**LOSS_BITS / count
    if task == "classification":
        return {"accuracy": float(totals[0]) / count, "loss": loss}
    return {"mae": float(totals[0]) / 2**LOSS_BITS / count, "loss": loss}
