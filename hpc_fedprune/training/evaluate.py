"""Evaluation of the global model, split over ranks, with exact order-free totals.

The test set is cut into fixed batches (independent of the world size); batch b is
evaluated by rank ``b % size``. Every total is an integer: per-sample losses and errors
are turned into fixed point, correct and top-5 counts and the confusion matrix are
counts, and they are summed over ranks as int64, so every score is the same bits for any
rank count.

Scores (the names `evaluate` returns; the run's metrics add a ``test_`` prefix)

classification
    ``accuracy`` (top-1), ``loss`` (mean cross-entropy), ``top5_accuracy`` (the true class
    among the 5 largest outputs; only with more than 5 classes), and ``precision_macro``,
    ``recall_macro``, ``f1_macro`` from the confusion matrix (`macro_scores`): the
    unweighted mean over the classes present in the evaluated samples of each class's
    precision ``TP / (TP + FP)`` (0 for a class never predicted), recall ``TP / support``
    and F1 ``2 P R / (P + R)`` (0 when P + R = 0); scikit-learn's ``average='macro'``
    with ``labels`` the present classes and ``zero_division=0``.
regression
    ``mae`` (mean absolute error), ``loss`` (mean squared error), ``rmse`` (its square
    root) and ``r2``: ``1 - SSE / SST`` with ``SST`` the squared deviations of the
    evaluated targets from their own mean (NaN when the targets are all equal), as
    scikit-learn's ``r2_score``. ``SST`` does not depend on the model: every rank holds
    the whole test set and computes it itself, in float64, in sample order.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ..comm.exact import to_fixed
from .samples import client_samples

LOSS_BITS = 24  # resolution of per-sample losses in the exact sum (2**-24)
TOP_K = 5  # top-k accuracy is reported with more than this many classes

# Layout of the classification totals: then the confusion matrix, row-major (true, predicted).
_CORRECT, _LOSS, _COUNT, _TOP_K = 0, 1, 2, 3


def score_names(task: str, num_classes: int) -> tuple[str, ...]:
    """The scores `evaluate` returns besides ``accuracy`` / ``mae`` and ``loss``, in order.

    Parameters
    ----------
    task : {'classification', 'regression'}
    num_classes : int
        Classes of the task (0 for regression); top-5 accuracy needs more than 5.
    """
    if task == "classification":
        top = ("top5_accuracy",) if num_classes > TOP_K else ()
        return (*top, "f1_macro", "precision_macro", "recall_macro")
    return ("rmse", "r2")


def num_outputs(flat_model) -> int:
    """Units of the network's last layer (the zoo registers it last, see ``models.nets``)."""
    for info in reversed(flat_model.layout):
        if info.kind in ("linear_weight", "conv_weight"):
            return int(info.shape[0])
    raise ValueError("the model has no conv or linear layer")


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
    """Scores of the model in ``flat_model`` on (x, y) (see the module docstring).

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
        ``accuracy`` or ``mae``, ``loss`` and the `score_names` of the task, identical on
        every rank.
    """
    rank, size = (0, 1) if world is None else (world.rank, world.size)
    totals = local_totals(
        flat_model, x, y, task=task, batch_size=batch_size, rank=rank, size=size, indices=indices
    )
    if world is not None:
        totals = world.sum_int64(totals)
    if task == "classification":
        return classification_scores(totals, num_outputs(flat_model))
    targets = y if indices is None else y[torch.as_tensor(indices, device=y.device)]
    return regression_scores(totals, targets.double().cpu().numpy())


@torch.no_grad()
def local_totals(
    flat_model,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    task: str,
    batch_size: int,
    rank: int,
    size: int,
    indices: np.ndarray | None = None,
) -> np.ndarray:
    """This rank's integer totals over its batches (``b % size == rank``).

    Classification: ``[correct, loss, samples, top-5 correct, confusion (K*K)]``;
    regression: ``[absolute error, squared error, samples]``; losses and errors in fixed
    point with ``LOSS_BITS`` fractional bits. Summed over ranks they are the totals of
    one rank that evaluates everything.
    """
    model = flat_model.module
    model.eval()
    n = len(y) if indices is None else len(indices)
    k = num_outputs(flat_model) if task == "classification" else 0
    totals = np.zeros(4 + k * k if k else 3, dtype=np.int64)
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
            pred = out.argmax(1)
            totals[_CORRECT] += int((pred == target).sum())
            if k > TOP_K:
                top = out.topk(TOP_K, dim=1).indices
                totals[_TOP_K] += int((top == target[:, None]).any(dim=1).sum())
            pairs = torch.bincount(target * k + pred, minlength=k * k)
            totals[4:] += pairs.cpu().numpy().astype(np.int64)
        else:
            pred = out.reshape(-1)
            losses = F.mse_loss(pred, target, reduction="none")
            err = (pred - target).abs().double().cpu().numpy()
            totals[0] += int(to_fixed(err, cohort_size=max(n, 1), frac_bits=LOSS_BITS).sum())
        loss_fixed = to_fixed(
            losses.double().cpu().numpy(), cohort_size=max(n, 1), frac_bits=LOSS_BITS
        )
        totals[_LOSS] += int(loss_fixed.sum())
        totals[_COUNT] += len(target)
    model.train()
    return totals


def classification_scores(totals: np.ndarray, num_classes: int) -> dict[str, float]:
    """Scores from summed classification totals (layout of `local_totals`)."""
    count = max(int(totals[_COUNT]), 1)
    scores = {
        "accuracy": float(totals[_CORRECT]) / count,
        "loss": float(totals[_LOSS]) / 2**LOSS_BITS / count,
    }
    if num_classes > TOP_K:
        scores["top5_accuracy"] = float(totals[_TOP_K]) / count
    confusion = totals[4:].reshape(num_classes, num_classes)
    precision, recall, f1 = macro_scores(confusion)
    scores.update(f1_macro=f1, precision_macro=precision, recall_macro=recall)
    return scores


def regression_scores(totals: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """Scores from summed regression totals and the evaluated targets (for ``SST``)."""
    count = max(int(totals[_COUNT]), 1)
    sse = float(totals[_LOSS]) / 2**LOSS_BITS
    mse = sse / count
    sst = float(np.sum((targets - targets.mean()) ** 2)) if len(targets) else 0.0
    return {
        "mae": float(totals[0]) / 2**LOSS_BITS / count,
        "loss": mse,
        "rmse": math.sqrt(mse),
        "r2": 1.0 - sse / sst if sst > 0 else float("nan"),
    }


def macro_scores(confusion: np.ndarray) -> tuple[float, float, float]:
    """Macro precision, recall and F1 from a confusion matrix (rows true, columns predicted).

    Averaged over the classes with at least one true sample; a class never predicted has
    precision 0, and a class with P + R = 0 has F1 0. NaN when the matrix is empty.
    """
    c = np.asarray(confusion, dtype=np.int64)
    tp = np.diag(c).astype(np.float64)
    support = c.sum(axis=1).astype(np.float64)
    predicted = c.sum(axis=0).astype(np.float64)
    present = support > 0
    if not present.any():
        return float("nan"), float("nan"), float("nan")
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    both = precision + recall
    f1 = np.divide(2 * precision * recall, both, out=np.zeros_like(tp), where=both > 0)
    return (
        float(precision[present].mean()),
        float(recall[present].mean()),
        float(f1[present].mean()),
    )
