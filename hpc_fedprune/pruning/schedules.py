"""Schedules: the target sparsity (or coefficient) as a function of the round.

Each schedule is a small frozen dataclass, validated at construction (`InputError` for
values out of range) and called with a round number; a plain function with the same
arguments sits beside each one. Rounds are whatever the caller counts (FedSparsify counts
from 1, FedDIP from 0); every formula below says which convention its paper uses.

- `Cubic`: Zhu and Gupta's gradual schedule with frequency quantisation (docs/methods.md);
  with ``t0 = 0, t_end = T, freq = 1`` it is FedDIP's schedule.
- `Multiplicative`: prune a fraction ``p`` of the remaining weights every ``freq`` rounds
  (FedSparsify's earlier code): density ``(1 - p) ** n`` after ``n`` pruning events.
- `Constant`: one sparsity from round ``t0`` on (one-shot pruning, fixed random masks).
- `FedDIPLambda`: FedDIP's staircase for its regularisation coefficient.
- `CosineDrop`: FedDST's cosine-annealed prune-and-regrow fraction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import InputError

__all__ = [
    "SCHEDULES",
    "Constant",
    "CosineDrop",
    "Cubic",
    "FedDIPLambda",
    "Multiplicative",
    "build_schedule",
    "constant_sparsity",
    "cosine_drop_fraction",
    "cubic_sparsity",
    "feddip_lambda",
    "multiplicative_sparsity",
]


def _fraction(value: float, what: str) -> None:
    if not 0.0 <= float(value) <= 1.0:
        raise InputError(f"{what} must be in [0, 1], got {value}")


def _round(t: int) -> int:
    if int(t) != t or t < 0:
        raise InputError(f"round must be a non-negative integer, got {t!r}")
    return int(t)


@dataclass(frozen=True)
class Cubic:
    """Zhu and Gupta's cubic schedule, quantised to every ``freq`` rounds.

    ``s_t = s_f + (s_i - s_f) * (1 - (t' - t0) / (t_end - t0)) ** 3`` with
    ``t' = freq * floor(t / freq)`` clamped to ``[t0, t_end]``, so ``s_t = s_i`` up to
    ``t0`` and ``s_f`` from ``t_end`` on (FedSparsify prunes only when ``t > t0``; the
    value at ``t0`` itself is ``s_i``). Example (R = 200, t0 = 1, s_i = 0, s_f = 0.9,
    freq = 1): t = 50 -> 0.514, t = 100 -> 0.786, t = 200 -> 0.9 exactly.

    Attributes
    ----------
    t0 : int
        Start round.
    s_i : float
        Sparsity at and before ``t0``.
    s_f : float
        Final sparsity, reached at ``t_end``.
    t_end : int
        Round at which ``s_f`` is reached: the run's last round (FedSparsify), or the
        number of rounds T with rounds 0..T-1 (FedDIP, which never quite reaches s_f).
    freq : int
        Sparsity changes only at multiples of ``freq``.
    """

    t0: int
    s_i: float
    s_f: float
    t_end: int
    freq: int = 1

    def __post_init__(self) -> None:
        _fraction(self.s_i, "s_i")
        _fraction(self.s_f, "s_f")
        if self.t0 < 0 or self.t_end <= self.t0:
            raise InputError(f"cubic schedule needs 0 <= t0 < t_end, got {self.t0}, {self.t_end}")
        if self.freq < 1:
            raise InputError(f"cubic schedule frequency must be >= 1, got {self.freq}")

    def __call__(self, t: int) -> float:
        t = _round(t)
        tq = self.freq * (t // self.freq)
        tq = min(max(tq, self.t0), self.t_end)
        if tq == self.t_end:
            return float(self.s_f)
        remaining = 1.0 - (tq - self.t0) / (self.t_end - self.t0)
        return float(self.s_f + (self.s_i - self.s_f) * remaining**3)


def cubic_sparsity(t: int, *, t0: int, s_i: float, s_f: float, t_end: int, freq: int = 1) -> float:
    """`Cubic` as a function: the sparsity at round ``t``."""
    return Cubic(t0=t0, s_i=s_i, s_f=s_f, t_end=t_end, freq=freq)(t)


@dataclass(frozen=True)
class Multiplicative:
    """Prune a fraction ``p`` of the remaining weights every ``freq`` rounds.

    Pruning events happen at the rounds ``t > t0`` that are multiples of ``freq``; after
    ``n`` events the sparsity is ``1 - (1 - p) ** n``, capped at ``s_max``. To reach 0.95 in
    ``n`` events use ``p = 1 - 0.05 ** (1 / n)``.

    Attributes
    ----------
    p : float
        Fraction of the remaining weights pruned per event, in [0, 1].
    freq : int
        Rounds between events.
    t0 : int
        No event at or before this round.
    s_max : float
        Upper bound on the sparsity.
    """

    p: float
    freq: int = 1
    t0: int = 0
    s_max: float = 1.0

    def __post_init__(self) -> None:
        _fraction(self.p, "p")
        _fraction(self.s_max, "s_max")
        if self.freq < 1 or self.t0 < 0:
            raise InputError(f"multiplicative schedule needs freq >= 1, t0 >= 0, got {self}")

    def events(self, t: int) -> int:
        """Number of pruning events in rounds ``t0 + 1 .. t``."""
        t = _round(t)
        if t <= self.t0:
            return 0
        return t // self.freq - self.t0 // self.freq

    def __call__(self, t: int) -> float:
        return float(min(self.s_max, 1.0 - (1.0 - self.p) ** self.events(t)))

    def prunes_at(self, t: int) -> bool:
        """Whether round ``t`` has a pruning event."""
        return _round(t) > self.t0 and self.events(t) > self.events(t - 1)

    def pruned_after(self, t: int, kept: int, total: int) -> int:
        """Pruned entries after round ``t`` when ``kept`` of ``total`` are kept before it.

        An event prunes ``floor(p * kept)`` of the entries kept now (the non-zeros, the
        authors' ``PurgeByNNZWeightMagnitude``), so what the merge already removed counts;
        never more than ``floor(s_max * total)`` in all, and nothing comes back.
        """
        pruned = total - kept
        if not self.prunes_at(t):
            return pruned
        cap = math.floor(self.s_max * total)
        return max(pruned, min(pruned + math.floor(self.p * kept), cap))


def multiplicative_sparsity(
    t: int, *, p: float, freq: int = 1, t0: int = 0, s_max: float = 1.0
) -> float:
    """`Multiplicative` as a function: the sparsity at round ``t``."""
    return Multiplicative(p=p, freq=freq, t0=t0, s_max=s_max)(t)


@dataclass(frozen=True)
class Constant:
    """Sparsity ``s`` from round ``t0`` on, 0 before."""

    s: float
    t0: int = 0

    def __post_init__(self) -> None:
        _fraction(self.s, "s")
        if self.t0 < 0:
            raise InputError(f"constant schedule needs t0 >= 0, got {self.t0}")

    def __call__(self, t: int) -> float:
        return float(self.s) if _round(t) >= self.t0 else 0.0


def constant_sparsity(t: int, *, s: float, t0: int = 0) -> float:
    """`Constant` as a function."""
    return Constant(s=s, t0=t0)(t)


@dataclass(frozen=True)
class FedDIPLambda:
    """FedDIP's staircase for the regularisation coefficient (``client.py``).

    Rounds 0..T-1 are cut into ``Q = min(segments, T)`` segments of ``L = T // Q`` rounds,
    the last one absorbing the remainder; in segment ``i`` (``i = min(t // L, Q - 1)``)
    the coefficient is 0 for ``i = 0`` and ``lambda_init + (i - 1) * (lambda_max -
    lambda_init) / (Q - 1)`` otherwise. T = 1000, lambda_max = 1e-3: rounds 0-49 -> 0,
    50-99 -> 5e-4, 950-999 -> 9.74e-4 (lambda_max itself is never reached).

    For T < ``segments`` the authors' code divides by zero; here each round is its own
    segment (Q = T), keeping the shape: 0 first, ``lambda_init`` second, then evenly up
    towards ``lambda_max``. Rounds at or after T stay in the last segment.

    Attributes
    ----------
    T : int
        Number of rounds.
    lambda_max : float
        Coefficient the staircase climbs towards.
    lambda_init : float
        Value of the second segment (5e-4 in the code).
    segments : int
        Number of segments Q (20 in the code).
    """

    T: int
    lambda_max: float
    lambda_init: float = 5e-4
    segments: int = 20

    def __post_init__(self) -> None:
        if self.T < 1 or self.segments < 1:
            raise InputError(f"FedDIP lambda needs T >= 1 and segments >= 1, got {self}")
        if self.lambda_max < 0 or self.lambda_init < 0:
            raise InputError(f"FedDIP lambda coefficients must be >= 0, got {self}")

    def __call__(self, t: int) -> float:
        t = _round(t)
        q = min(self.segments, self.T)
        length = self.T // q
        i = min(t // length, q - 1)
        if i == 0:
            return 0.0
        return float(self.lambda_init + (i - 1) * (self.lambda_max - self.lambda_init) / (q - 1))


def feddip_lambda(
    t: int, T: int, lambda_max: float, *, lambda_init: float = 5e-4, segments: int = 20
) -> float:
    """`FedDIPLambda` as a function: the coefficient at round ``t`` of ``T``."""
    return FedDIPLambda(T=T, lambda_max=lambda_max, lambda_init=lambda_init, segments=segments)(t)


@dataclass(frozen=True)
class CosineDrop:
    """FedDST's prune-and-regrow fraction: ``alpha / 2 * (1 + cos(pi * t / t_end))``.

    Falls from ``alpha`` at round 0 to 0 at ``t_end`` and stays 0 after.
    """

    alpha: float
    t_end: int

    def __post_init__(self) -> None:
        _fraction(self.alpha, "alpha")
        if self.t_end < 1:
            raise InputError(f"cosine drop needs t_end >= 1, got {self.t_end}")

    def __call__(self, t: int) -> float:
        t = min(_round(t), self.t_end)
        return float(self.alpha / 2.0 * (1.0 + math.cos(math.pi * t / self.t_end)))


def cosine_drop_fraction(t: int, *, alpha: float, t_end: int) -> float:
    """`CosineDrop` as a function."""
    return CosineDrop(alpha=alpha, t_end=t_end)(t)


SCHEDULES = {
    "cubic": Cubic,
    "multiplicative": Multiplicative,
    "constant": Constant,
    "feddip_lambda": FedDIPLambda,
    "cosine_drop": CosineDrop,
}


def build_schedule(kind: str, **params: float):
    """Build a schedule from a config section, e.g. ``build_schedule("cubic", t0=1, ...)``.

    Raises
    ------
    InputError
        Unknown kind, unknown or missing parameter, or a value out of range.
    """
    try:
        cls = SCHEDULES[kind]
    except KeyError:
        raise InputError(f"unknown schedule {kind!r}; known: {', '.join(SCHEDULES)}") from None
    try:
        return cls(**params)
    except TypeError as exc:
        raise InputError(f"schedule {kind!r}: {exc}") from None
