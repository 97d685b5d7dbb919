"""Membership inference: AUC and advantage arithmetic, the sets, and the attacks' verdicts."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from hpc_fedprune.analysis.privacy import privacy_lines, read_privacy
from hpc_fedprune.config import load_config
from hpc_fedprune.errors import InputError
from hpc_fedprune.privacy import (
    auc_null_std,
    best_advantage,
    membership_sets,
    plan_privacy,
    roc_auc,
    shadow_split,
    split_holdout,
)
from hpc_fedprune.privacy.attack import (
    attack_features,
    fit_logistic,
    sample_losses,
)
from hpc_fedprune.privacy.shadow import build_shadow, outputs_of, train_shadow
from hpc_fedprune.sim.setup import build_setup
from hpc_fedprune.store import RunFile

# ------------------------------------------------------------------------- AUC, advantage


def test_auc_hand_example_counts_ties_as_half():
    # Pairs (member, non-member): 3>2, 3>0, 2=2 (1/2), 2>0, 1<2, 1>0 -> 4.5 of 6.
    assert roc_auc([3, 2, 1], [2, 0]) == pytest.approx(0.75)


def test_auc_equals_pairwise_count_with_many_ties():
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 5, 40), rng.integers(0, 5, 30)
    pairs = [(x > y) + 0.5 * (x == y) for x, y in itertools.product(a, b)]
    assert roc_auc(a, b) == pytest.approx(np.mean(pairs), abs=1e-12)


def test_auc_extremes_and_direction():
    assert roc_auc([5, 6], [1, 2]) == 1.0
    assert roc_auc([1, 2], [5, 6]) == 0.0
    assert roc_auc([1, 1], [1, 1]) == 0.5


def test_advantage_hand_example():
    # t=1 calls all members and half the non-members members: 1 - 1/2 is the best.
    advantage, balanced = best_advantage([3, 2, 1], [2, 0])
    assert advantage == pytest.approx(0.5)
    assert balanced == pytest.approx(0.75)


def test_advantage_never_negative_and_one_when_separable():
    assert best_advantage([0, 1], [5, 6]) == (0.0, 0.5)
    assert best_advantage([5, 6], [0, 1]) == (1.0, 1.0)


def test_null_std_matches_mann_whitney_variance():
    assert auc_null_std(1000, 1000) == pytest.approx(np.sqrt(2001 / 12e6))
    # Empirically: AUCs of pure-noise scores spread by about that much.
    rng = np.random.default_rng(1)
    aucs = [roc_auc(rng.normal(size=50), rng.normal(size=50)) for _ in range(400)]
    assert np.std(aucs) == pytest.approx(auc_null_std(50, 50), rel=0.15)


# --------------------------------------------------------------------------------- sets


def test_holdout_is_a_seeded_disjoint_split():
    kept, held = split_holdout(1000, 0.2, seed=4)
    assert len(held) == 200 and len(kept) == 800
    assert np.array_equal(np.union1d(kept, held), np.arange(1000))
    again = split_holdout(1000, 0.2, seed=4)
    assert np.array_equal(again[1], held)
    assert not np.array_equal(split_holdout(1000, 0.2, seed=5)[1], held)


def test_membership_sets_are_balanced_capped_and_disjoint():
    parts = [np.arange(0, 300), np.arange(300, 500)]
    holdout = np.arange(500, 900)
    s = membership_sets(parts, holdout, cap=300, shadow=True, seed=0)
    assert len(s.members) == len(s.nonmembers) == 150
    assert np.isin(s.members, np.arange(500)).all()
    assert np.isin(s.nonmembers, holdout).all()
    assert np.union1d(s.nonmembers, s.shadow_pool).size == 400  # all of the holdout, once
    assert np.intersect1d(s.nonmembers, s.shadow_pool).size == 0
    # With shadow models, non-members take at most half of the holdout.
    s = membership_sets(parts, holdout, cap=10_000, shadow=True, seed=0)
    assert len(s.nonmembers) == 200 and len(s.shadow_pool) == 200


def test_shadow_split_in_and_out_are_disjoint_halves_of_the_pool():
    pool = np.arange(100, 200)
    seen, unseen = shadow_split(pool, 30, 2, seed=0)
    assert len(seen) == len(unseen) == 30
    assert np.intersect1d(seen, unseen).size == 0 and np.isin(seen, pool).all()
    assert len(shadow_split(pool, 500, 0, seed=0)[0]) == 50  # capped at half the pool


TINY_PRIVATE = [
    "data.num_train=300",
    "data.num_test=50",
    "data.shape=[1, 6, 6]",
    "model.name=mlp",
    "model.mlp.hidden=[16]",
    "partition.num_clients=4",
    "partition.min_size=5",
    "federation.clients_per_round=4",
    "federation.rounds=2",
    "privacy.enabled=true",
    "privacy.holdout=0.4",
]


def test_no_client_holds_a_held_out_sample():
    setup = build_setup(load_config(None, TINY_PRIVATE), 1, "cpu")
    held = np.setdiff1d(np.arange(300), np.concatenate(setup.train_parts))
    assert len(held) == 120
    sets = setup.privacy
    assert np.isin(sets.nonmembers, held).all() and np.isin(sets.shadow_pool, held).all()
    assert not np.isin(sets.members, held).any()
    assert build_setup(load_config(None, TINY_PRIVATE[:-2]), 1, "cpu").privacy is None


def test_privacy_rounds_after_the_last_round_are_refused():
    config = load_config(None, [*TINY_PRIVATE, "privacy.rounds=[1, 7]"])
    with pytest.raises(InputError, match="privacy.rounds"):
        plan_privacy(config, [np.arange(10)], np.arange(10, 20))


# ------------------------------------------------------------------------------ attacks


def _trained(config, x, y, indices, k=0):
    module = build_shadow(config, (1, 6, 6), 4, k, "cpu")
    train_shadow(module, x, y, indices, config=config, task="classification", k=k)
    return module


@pytest.fixture(scope="module")
def noisy_data():
    # Labels independent of inputs: any accuracy above chance on a sample is memorisation.
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.normal(size=(800, 1, 6, 6)).astype(np.float32))
    y = torch.from_numpy(rng.integers(0, 4, 800))
    config = load_config(
        None,
        [
            "model.name=mlp",
            "model.mlp.hidden=[64]",
            "training.lr=0.1",
            "training.batch_size=20",
            "privacy.shadow_epochs=60",
        ],
    )
    return config, x, y


def _threshold_auc(module, x, y, members, nonmembers):
    idx = np.concatenate([members, nonmembers])
    losses = sample_losses(outputs_of(module, x, idx, 256), y.numpy()[idx], "classification")
    return roc_auc(-losses[: len(members)], -losses[len(members) :])


def test_overfit_model_is_exposed_to_both_attacks(noisy_data):
    config, x, y = noisy_data
    members, nonmembers = np.arange(0, 100), np.arange(100, 200)
    target = _trained(config, x, y, members)
    assert _threshold_auc(target, x, y, members, nonmembers) > 0.5 + 6 * auc_null_std(100, 100)
    # Shadow attack: a shadow model of the same kind on disjoint data teaches the attack model.
    seen, unseen = np.arange(200, 300), np.arange(300, 400)
    shadow = _trained(config, x, y, seen, k=1)
    yy = y.numpy()
    feats = np.concatenate(
        [
            attack_features(outputs_of(shadow, x, seen, 256), yy[seen], "classification"),
            attack_features(outputs_of(shadow, x, unseen, 256), yy[unseen], "classification"),
        ]
    )
    attack = fit_logistic(feats, np.r_[np.ones(100), np.zeros(100)])
    idx = np.concatenate([members, nonmembers])
    scores = attack.score(
        attack_features(outputs_of(target, x, idx, 256), yy[idx], "classification")
    )
    assert roc_auc(scores[:100], scores[100:]) > 0.5 + 6 * auc_null_std(100, 100)


def test_members_never_trained_on_look_like_nonmembers(noisy_data):
    config, x, y = noisy_data
    members, nonmembers = np.arange(0, 200), np.arange(200, 400)
    model = _trained(config, x, y, np.arange(400, 600))  # trained on neither set
    auc = _threshold_auc(model, x, y, members, nonmembers)
    assert abs(auc - 0.5) < 4 * auc_null_std(200, 200)


def test_regression_threshold_attack_uses_absolute_error():
    outputs = np.array([[1.0], [4.0], [2.5]])
    targets = np.array([1.5, 4.0, 0.5])
    assert np.allclose(sample_losses(outputs, targets, "regression"), [0.5, 0.0, 2.0])
    feats = attack_features(outputs, targets, "regression")
    assert feats.shape == (3, 2) and np.allclose(feats[:, 0], [0.5, 0.0, 2.0])


def test_logistic_attack_learns_the_direction_of_its_features():
    rng = np.random.default_rng(0)
    x = np.r_[rng.normal(1.0, 1.0, 200), rng.normal(-1.0, 1.0, 200)][:, None]
    model = fit_logistic(x, np.r_[np.ones(200), np.zeros(200)])
    assert model.coef[1] > 0
    s = model.score(x)
    assert roc_auc(s[:200], s[200:]) > 0.8


# ----------------------------------------------------------------------------- run files


def _row(rnd, attack, auc):
    return {
        "round": rnd,
        "attack": attack,
        "auc": auc,
        "advantage": 0.1,
        "balanced_accuracy": 0.55,
        "members": 10,
        "nonmembers": 10,
        "member_accuracy": 0.9,
        "nonmember_accuracy": 0.7,
    }


def test_rows_round_trip_and_analyze_reads_both_files(tmp_path):
    run = tmp_path / "run.h5"
    RunFile(run).append_privacy([_row(1, "threshold", 0.6), _row(1, "shadow", 0.7)])
    RunFile(run).append_privacy([_row(4, "threshold", 0.65), _row(4, "shadow", 0.75)])
    RunFile(tmp_path / "privacy.h5").append_privacy([_row(4, "threshold", 0.65)])
    rows = read_privacy(run)
    assert [(r["source"], r["round"], r["attack"]) for r in rows] == [
        ("run", 1, "threshold"),
        ("run", 1, "shadow"),
        ("run", 4, "threshold"),
        ("run", 4, "shadow"),
        ("privacy command", 4, "threshold"),
    ]
    lines = privacy_lines(rows)
    assert [label for label, _ in lines] == ["MI threshold", "MI shadow", "MI threshold"]
    assert "AUC 0.750" in lines[1][1] and "round 4" in lines[1][1]
    assert "privacy command" in lines[2][1] and "privacy command" not in lines[0][1]
