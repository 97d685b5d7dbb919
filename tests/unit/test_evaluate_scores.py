"""Evaluation scores against hand computations, and their independence of the rank count."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hpc_fedprune.models import FlatModel, build_model
from hpc_fedprune.training.evaluate import (
    evaluate,
    local_totals,
    macro_scores,
    regression_scores,
    score_names,
)


def identity_model(k: int) -> FlatModel:
    """A network whose outputs are its inputs: a linear layer k -> k with identity weights."""
    net = FlatModel(build_model("mlp", (k,), k if k > 1 else 0, seed=0, hidden=[]))
    w = net.module.net[1]
    with torch.no_grad():
        w.weight.copy_(torch.eye(k))
        w.bias.zero_()
    return net


def test_macro_scores_of_a_hand_made_confusion_matrix():
    # rows: true class, columns: predicted. Class 2 is never predicted; class 3 never occurs
    # in the data but is predicted once.
    c = np.array(
        [
            [3, 1, 0, 0],  # class 0: support 4
            [1, 2, 0, 1],  # class 1: support 4
            [1, 1, 0, 0],  # class 2: support 2, never predicted
            [0, 0, 0, 0],  # class 3: absent, left out of the average
        ]
    )
    # precision: 0 -> 3/5, 1 -> 2/4, 2 -> 0 (never predicted); recall: 3/4, 2/4, 0/2
    p = [3 / 5, 2 / 4, 0.0]
    r = [3 / 4, 2 / 4, 0.0]
    f = [2 * a * b / (a + b) if a + b else 0.0 for a, b in zip(p, r, strict=True)]
    precision, recall, f1 = macro_scores(c)
    assert precision == pytest.approx(sum(p) / 3)
    assert recall == pytest.approx(sum(r) / 3)
    assert f1 == pytest.approx(sum(f) / 3)
    assert np.isnan(macro_scores(np.zeros((3, 3), dtype=np.int64))[0])


def test_classification_scores_match_a_numpy_computation():
    k, n = 7, 53
    gen = np.random.default_rng(0)
    logits = gen.standard_normal((n, k)).astype(np.float32)
    labels = gen.integers(0, k - 1, n)  # the last class never occurs
    logits[labels == 2, 2] -= 10.0  # class 2 is never predicted for its own samples
    net = identity_model(k)
    scores = evaluate(
        net,
        torch.from_numpy(logits),
        torch.from_numpy(labels),
        task="classification",
        batch_size=10,
        world=None,
    )
    pred = logits.argmax(1)
    top5 = np.argsort(-logits, axis=1)[:, :5]
    assert scores["accuracy"] == pytest.approx(np.mean(pred == labels))
    assert scores["top5_accuracy"] == pytest.approx(np.mean((top5 == labels[:, None]).any(1)))
    present = np.unique(labels)
    prec, rec, f1 = [], [], []
    for c in present:
        tp = np.sum((pred == c) & (labels == c))
        predicted, support = np.sum(pred == c), np.sum(labels == c)
        p = tp / predicted if predicted else 0.0
        r = tp / support
        prec.append(p)
        rec.append(r)
        f1.append(2 * p * r / (p + r) if p + r else 0.0)
    assert scores["precision_macro"] == pytest.approx(np.mean(prec))
    assert scores["recall_macro"] == pytest.approx(np.mean(rec))
    assert scores["f1_macro"] == pytest.approx(np.mean(f1))
    shifted = logits - logits.max(1, keepdims=True)
    ce = -(shifted[np.arange(n), labels] - np.log(np.exp(shifted).sum(1)))
    assert scores["loss"] == pytest.approx(ce.mean(), abs=1e-6)
    assert set(scores) == {"accuracy", "loss", *score_names("classification", k)}


def test_top5_only_with_more_than_five_classes():
    assert "top5_accuracy" not in score_names("classification", 5)
    net = identity_model(5)
    x = torch.eye(5)
    scores = evaluate(net, x, torch.arange(5), task="classification", batch_size=8, world=None)
    assert "top5_accuracy" not in scores
    assert scores["accuracy"] == scores["f1_macro"] == 1.0


def test_regression_scores_match_a_numpy_computation():
    gen = np.random.default_rng(1)
    pred = gen.uniform(40, 80, 37).astype(np.float32)
    y = (pred + gen.normal(0, 3, 37)).astype(np.float32)
    net = identity_model(1)
    scores = evaluate(
        net,
        torch.from_numpy(pred[:, None]),
        torch.from_numpy(y),
        task="regression",
        batch_size=8,
        world=None,
    )
    err = pred.astype(np.float64) - y
    assert scores["mae"] == pytest.approx(np.abs(err).mean(), abs=1e-6)
    assert scores["loss"] == pytest.approx((err**2).mean(), rel=1e-6)
    assert scores["rmse"] == pytest.approx(np.sqrt((err**2).mean()), rel=1e-6)
    r2 = 1 - (err**2).sum() / ((y - y.astype(np.float64).mean()) ** 2).sum()
    assert scores["r2"] == pytest.approx(r2, rel=1e-6)
    # Predicting the mean of the evaluated targets scores R^2 = 0; constant targets: NaN.
    totals = np.array([0, int(((y - y.mean()) ** 2).sum() * 2**24), len(y)], dtype=np.int64)
    assert regression_scores(totals, y.astype(np.float64))["r2"] == pytest.approx(0, abs=1e-6)
    assert np.isnan(regression_scores(totals, np.full(5, 3.0))["r2"])


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_totals_summed_over_ranks_are_the_one_rank_totals(task):
    """What ranks sum is exactly what one rank counts, so every score is rank independent."""
    gen = torch.Generator().manual_seed(3)
    if task == "classification":
        net = FlatModel(build_model("mlp", (1, 6, 6), 10, seed=0, hidden=[16]))
        y = torch.randint(0, 10, (95,), generator=gen)
    else:
        net = FlatModel(build_model("mlp", (1, 6, 6), 0, seed=0, hidden=[16]))
        y = torch.rand(95, generator=gen) * 30
    x = torch.randn(95, 1, 6, 6, generator=gen)
    indices = np.arange(3, 90, 2)
    for idx in (None, indices):
        kw = dict(task=task, batch_size=7, indices=idx)
        one = local_totals(net, x, y, rank=0, size=1, **kw)
        for size in (2, 3, 4):
            parts = [local_totals(net, x, y, rank=r, size=size, **kw) for r in range(size)]
            np.testing.assert_array_equal(np.sum(parts, axis=0), one)
    if task == "classification":
        assert one[4:].sum() == len(indices)  # the confusion matrix counts every sample
