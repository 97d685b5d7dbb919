"""The attacks' arithmetic on model outputs: per-sample losses, features, the attack model.

Pure numpy in float64, no randomness: given the same outputs, every rank and every run
computes the same scores.

Threshold attack (Yeom et al.): the score of a sample is minus its loss (cross-entropy,
or the absolute error for regression); members tend to have lower loss.

Shadow attack (Shokri et al.): shadow models trained by the attacker on data of the same
distribution give output vectors of samples they were and were not trained on; a
logistic regression learns to tell them apart and then scores the target model's
outputs. Its inputs are the sorted log-probabilities and the true-class log-probability
(classification) or the absolute error and its logarithm (regression).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_LOG_FLOOR = -50.0  # log-probabilities below this carry no more information


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax in float64."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def sample_losses(outputs: np.ndarray, targets: np.ndarray, task: str) -> np.ndarray:
    """Per-sample loss: cross-entropy of the logits, or the absolute error (regression)."""
    if task == "classification":
        logp = log_softmax(outputs)
        return -logp[np.arange(len(logp)), np.asarray(targets, dtype=np.int64)]
    pred = np.asarray(outputs, dtype=np.float64).reshape(len(targets), -1)[:, 0]
    return np.abs(pred - np.asarray(targets, dtype=np.float64))


def correct(outputs: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Per-sample correctness of the arg-max class."""
    return np.asarray(outputs).argmax(axis=1) == np.asarray(targets)


def attack_features(outputs: np.ndarray, targets: np.ndarray, task: str) -> np.ndarray:
    """The shadow attack's inputs for each sample (one row per sample)."""
    if task == "classification":
        logp = np.maximum(log_softmax(outputs), _LOG_FLOOR)
        true = logp[np.arange(len(logp)), np.asarray(targets, dtype=np.int64)]
        return np.column_stack([-np.sort(-logp, axis=1), true])
    err = sample_losses(outputs, targets, task)
    return np.column_stack([err, np.log(err + 1e-6)])


@dataclass(frozen=True)
class LogisticModel:
    """A fitted logistic regression on standardised features."""

    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray  # bias first

    def score(self, features: np.ndarray) -> np.ndarray:
        """The log-odds of membership (higher: more likely a member)."""
        z = (np.asarray(features, dtype=np.float64) - self.mean) / self.scale
        return self.coef[0] + z @ self.coef[1:]


def fit_logistic(
    features: np.ndarray, labels: np.ndarray, *, l2: float = 1e-3, iterations: int = 50
) -> LogisticModel:
    """Logistic regression by Newton's method (deterministic, no step size to tune).

    Parameters
    ----------
    features : numpy.ndarray
        ``n x d`` inputs.
    labels : numpy.ndarray
        1 for members, 0 for non-members.
    l2 : float
        Ridge penalty per sample on the weights (not the bias); keeps separable data finite.
    iterations : int
        Newton steps at most; stops once the step is below 1e-10.
    """
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale == 0] = 1.0  # constant features carry nothing; avoid 0/0
    design = np.column_stack([np.ones(len(x)), (x - mean) / scale])
    n, d = design.shape
    ridge = np.full(d, l2 * n)
    ridge[0] = 0.0
    w = np.zeros(d)
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-np.clip(design @ w, -500, 500)))
        grad = design.T @ (p - y) + ridge * w
        hess = (design * (p * (1 - p))[:, None]).T @ design + np.diag(ridge) + 1e-9 * np.eye(d)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.max(np.abs(step)) < 1e-10:
            break
    return LogisticModel(mean, scale, w)
