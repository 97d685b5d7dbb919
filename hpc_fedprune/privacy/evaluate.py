"""Membership-inference evaluation of a global model, with the work split over ranks.

The evaluated samples (members, then non-members) are cut into fixed batches of
``federation.eval_batch_size``; batch ``b`` is run by rank ``b % size`` and rank 0 puts
the outputs back in sample order. Shadow model ``k`` is trained by rank ``k % size``,
once per process, and rank 0 fits the attack model on their outputs. The batches and the
shadow models do not depend on the number of ranks, so neither do the results.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError
from .attack import attack_features, correct, fit_logistic, sample_losses
from .metrics import best_advantage, roc_auc
from .sets import MembershipSets, membership_sets, shadow_split
from .shadow import build_shadow, outputs_of, train_shadow


def plan_privacy(config, train_parts: list[np.ndarray], holdout: np.ndarray) -> MembershipSets:
    """The run's membership sets, with its privacy settings checked (InputError if bad)."""
    p = config.privacy
    last = config.federation.rounds
    late = [r for r in p.rounds if r > last]
    if late:
        kept = ",".join(str(r) for r in p.rounds if r <= last)  # no spaces: one shell word
        raise InputError(
            f"privacy.rounds: {late} after the last round ({last}); the last round is "
            f"always attacked, so set privacy.rounds=[{kept}] "
            f"or raise federation.rounds to {max(late)}"
        )
    seed = config.runtime.seed
    sets = membership_sets(
        train_parts, holdout, cap=p.samples, shadow=p.shadow_models > 0, seed=seed
    )
    if p.shadow_models > 0:
        shadow_split(sets.shadow_pool, shadow_size(config, sets, train_parts), 0, seed=seed)
    return sets


def shadow_size(config, sets: MembershipSets, train_parts) -> int:
    """Training samples per shadow model: the setting, or all the clients' samples."""
    requested = config.privacy.shadow_samples or sum(len(p) for p in train_parts)
    return min(requested, len(sets.shadow_pool) // 2)


class PrivacyEvaluator:
    """Runs both attacks against global models of one run.

    Parameters
    ----------
    config : Config
    sets : MembershipSets
        From `plan_privacy`.
    shadow_samples : int
        Training samples per shadow model (`shadow_size`).
    task : {'classification', 'regression'}
    x, y : torch.Tensor
        The training set on the rank's device (members, non-members and shadow data
        all index into it).
    input_shape : tuple of int
    num_classes : int
    """

    def __init__(self, config, sets, shadow_samples, task, x, y, input_shape, num_classes):
        self.config = config
        self.sets = sets
        self.shadow_samples = shadow_samples
        self.task = task
        self.x, self.y = x, y
        self.input_shape, self.num_classes = input_shape, num_classes
        self.attack_model = None  # rank 0, after the shadow models have been trained
        self.shadows_trained = False

    @classmethod
    def from_setup(cls, config, setup, x, y) -> PrivacyEvaluator | None:
        """The evaluator of a run's built pieces, or None when privacy is off."""
        if setup.privacy is None:
            return None
        ds = setup.dataset
        size = shadow_size(config, setup.privacy, setup.train_parts)
        return cls(config, setup.privacy, size, ds.task, x, y, ds.input_shape, ds.num_classes)

    def due(self, rnd: int) -> bool:
        """True after the rounds in ``privacy.rounds`` and after the last round."""
        return rnd == self.config.federation.rounds or rnd in self.config.privacy.rounds

    def evaluate(self, flat_model, weights, rnd: int, world) -> list[dict] | None:
        """Attack ``weights`` (loaded into ``flat_model``); rank 0 gets one row per attack.

        Collective: every rank calls it; ranks other than 0 get None.
        """
        flat_model.load_(weights)
        module = flat_model.module
        if self.config.privacy.shadow_models > 0 and not self.shadows_trained:
            self._fit_shadow_attack(world)
        sets = self.sets
        indices = np.concatenate([sets.members, sets.nonmembers])
        outputs = self._outputs(module, indices, world)
        if not world.is_root:
            return None
        targets = self.y.cpu().numpy()[indices]
        n = len(sets.members)
        losses = sample_losses(outputs, targets, self.task)
        scores = {"threshold": -losses}
        if self.attack_model is not None:
            scores["shadow"] = self.attack_model.score(attack_features(outputs, targets, self.task))
        if self.task == "classification":
            hits = correct(outputs, targets).astype(np.float64)
            quality = {"member_accuracy": hits[:n].mean(), "nonmember_accuracy": hits[n:].mean()}
        else:
            quality = {"member_mae": losses[:n].mean(), "nonmember_mae": losses[n:].mean()}
        rows = []
        for attack, s in scores.items():
            advantage, balanced = best_advantage(s[:n], s[n:])
            rows.append(
                {
                    "round": rnd,
                    "attack": attack,
                    "auc": roc_auc(s[:n], s[n:]),
                    "advantage": advantage,
                    "balanced_accuracy": balanced,
                    "members": n,
                    "nonmembers": len(indices) - n,
                    **{k: float(v) for k, v in quality.items()},
                }
            )
        return rows

    def _outputs(self, module, indices: np.ndarray, world) -> np.ndarray | None:
        """Outputs on ``x[indices]``; batch b on rank ``b % size``; rank 0 gets them all."""
        size = self.config.federation.eval_batch_size
        mine = [
            (b, outputs_of(module, self.x, indices[lo : lo + size], size))
            for b, lo in enumerate(range(0, len(indices), size))
            if b % world.size == world.rank
        ]
        gathered = world.gather_objects(mine)
        if not world.is_root:
            return None
        parts = sorted((p for part in gathered for p in part), key=lambda p: p[0])
        return np.concatenate([out for _, out in parts])

    def _fit_shadow_attack(self, world) -> None:
        """Train the shadow models over the ranks; rank 0 fits the attack model."""
        p, seed = self.config.privacy, self.config.runtime.seed
        cap = max(p.samples // 2, 1)
        batch = self.config.federation.eval_batch_size
        mine = []
        for k in range(world.rank, p.shadow_models, world.size):
            seen, unseen = shadow_split(self.sets.shadow_pool, self.shadow_samples, k, seed=seed)
            module = build_shadow(self.config, self.input_shape, self.num_classes, k, self.x.device)
            train_shadow(module, self.x, self.y, seen, config=self.config, task=self.task, k=k)
            # At most `cap` of each kind per shadow model bounds the attack model's data.
            seen, unseen = _spread(seen, cap), _spread(unseen, cap)
            mine.append(
                (
                    k,
                    seen,
                    unseen,
                    outputs_of(module, self.x, seen, batch),
                    outputs_of(module, self.x, unseen, batch),
                )
            )
        gathered = world.gather_objects(mine)
        self.shadows_trained = True
        if not world.is_root:
            return
        y = self.y.cpu().numpy()
        features, labels = [], []
        for _, seen, unseen, out_seen, out_unseen in sorted(
            (r for part in gathered for r in part), key=lambda r: r[0]
        ):
            features += [
                attack_features(out_seen, y[seen], self.task),
                attack_features(out_unseen, y[unseen], self.task),
            ]
            labels += [np.ones(len(seen)), np.zeros(len(unseen))]
        self.attack_model = fit_logistic(np.concatenate(features), np.concatenate(labels))


def _spread(indices: np.ndarray, count: int) -> np.ndarray:
    """At most ``count`` of ``indices``, evenly spaced over the sorted array."""
    if len(indices) <= count:
        return indices
    return indices[np.linspace(0, len(indices) - 1, count).astype(np.int64)]
