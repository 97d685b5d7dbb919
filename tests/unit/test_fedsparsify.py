"""FedSparsify end to end through the contract: local purge, upload, exact sums, server step.

Hand-made clients on an 8-entry model (exact binary fractions), every expected value worked
out by hand in the comments; and the pruned count of every round of each schedule.
"""

from __future__ import annotations

import math

import pytest
import torch

from hpc_fedprune.algorithms import GlobalModel, RoundContext
from hpc_fedprune.algorithms.fedsparsify import FedSparsify
from hpc_fedprune.config import load_config
from hpc_fedprune.errors import InputError
from hpc_fedprune.models.flat import TensorInfo
from tests.unit.algo_driver import run_client, server_step, sums_of

LAYOUT = (
    TensorInfo("w", (2, 3), 0, 6, "linear_weight", 0, True),
    TensorInfo("b", (2,), 6, 2, "bias", 0, True),
)
PRUNABLE = torch.ones(8, dtype=torch.bool)
CLIENTS = [  # trained local models; samples 1, 1, 2 -> p = 1/4, 1/4, 1/2
    [4.0, -3.0, 2.0, 0.5, 0.25, 1.0, 0.125, 2.0],
    [-4.0, 1.0, 3.0, 0.5, 2.0, 0.25, 1.5, 0.125],
    [2.0, 2.0, -1.0, 3.0, 0.5, 0.125, 0.25, 1.5],
]
P = [0.25, 0.25, 0.5]
GLOBAL = torch.full((8,), 1.0)


def fedsparsify(*overrides: str) -> FedSparsify:
    config = load_config(None, ["algorithm.name=fedsparsify", *overrides])
    return FedSparsify(config, PRUNABLE, PRUNABLE, LAYOUT)


def ctx(rnd: int, size: int = 3) -> RoundContext:
    return RoundContext(round=rnd, rounds=10, seed=0, lr=0.1, cohort_samples=4, cohort_size=size)


def one_round(algo, rnd=2, mask=None):
    model = GlobalModel(GLOBAL.clone(), mask)
    updates = []
    for c, values in enumerate(CLIENTS):
        _, update = run_client(algo, ctx(rnd), model, c, torch.tensor(values))
        updates.append(update)
    sums = sums_of(algo, updates, P)
    return updates, server_step(algo, ctx(rnd), sums, model).model


LOCAL = ["algorithm.fedsparsify.variant=local", "algorithm.fedsparsify.schedule=constant",
         "algorithm.fedsparsify.final_sparsity=0.5"]  # fmt: skip


def test_local_purge_and_upload():
    updates, _ = one_round(fedsparsify(*LOCAL))
    # each client keeps its 4 largest |w|: {0,1,2,7}, {0,2,4,6}, {0,1,3,7}
    kept = [[0, 1, 2, 7], [0, 2, 4, 6], [0, 1, 3, 7]]
    for update, k in zip(updates, kept):
        assert update.support.nonzero().squeeze(1).tolist() == k
        assert not update.shared_support  # positions travel with the values
        assert torch.equal(update.client_mask, update.support)
        assert int((update.message != 0).sum()) == 4


# fedavg over the purged models [4,-3,2,0,0,0,0,2], [-4,0,3,0,2,0,1.5,0], [2,2,0,3,0,0,0,1.5]
FEDAVG = [1.0, 0.25, 1.25, 1.5, 0.5, 0.0, 0.375, 1.25]
# per position over the clients holding it: 0: 1; 1: (-.75 + 1)/.75; 2: (.5 + .75)/.5;
# 3: 3; 4: 2; 5: nobody; 6: 1.5; 7: (.5 + .75)/.75
NNZ = [1.0, 1 / 3, 2.5, 3.0, 2.0, 0.0, 1.5, 5 / 3]
# votes per position: 3 2 2 1 1 0 1 2; N = 3: half keeps >= 1 vote, strict >= 2
HALF = [True, True, True, True, True, False, True, True]
STRICT = [True, True, True, False, False, False, False, True]


@pytest.mark.parametrize(
    "merge, vote, weights, mask",
    [
        ("fedavg", "half", FEDAVG, [v != 0 for v in FEDAVG]),
        ("nnz_average", "half", NNZ, [v != 0 for v in NNZ]),
        ("majority_vote", "half", [v * k for v, k in zip(FEDAVG, HALF)], HALF),
        ("majority_vote", "strict", [v * k for v, k in zip(FEDAVG, STRICT)], STRICT),
        ("majority_vote_nnz", "half", [v * k for v, k in zip(NNZ, HALF)], HALF),
        ("majority_vote_nnz", "strict", [v * k for v, k in zip(NNZ, STRICT)], STRICT),
    ],
)
def test_local_merges_by_hand(merge, vote, weights, mask):
    algo = fedsparsify(*LOCAL, f"algorithm.fedsparsify.merge={merge}",
                       f"algorithm.fedsparsify.vote={vote}")  # fmt: skip
    _, out = one_round(algo)
    torch.testing.assert_close(out.weights, torch.tensor(weights), rtol=0, atol=1e-7)
    assert out.mask.tolist() == mask


def test_global_variant_prunes_the_merged_model():
    algo = fedsparsify("algorithm.fedsparsify.schedule=constant",
                       "algorithm.fedsparsify.final_sparsity=0.5")  # fmt: skip
    updates, out = one_round(algo)
    assert all(u.support is None for u in updates)  # no mask yet: dense uploads
    # weighted mean 1, .5, .75, 1.75, .8125, .375, .53125, 1.28125: the 4 smallest go
    assert out.mask.tolist() == [True, False, False, True, True, False, False, True]
    torch.testing.assert_close(
        out.weights, torch.tensor([1.0, 0, 0, 1.75, 0.8125, 0, 0, 1.28125]), rtol=0, atol=0
    )


def test_strict_majority_threshold():
    from hpc_fedprune.algorithms.merge import majority_threshold

    assert [majority_threshold(n, strict=True) for n in (1, 2, 3, 4, 5, 10)] == [1, 2, 2, 3, 3, 6]
    with pytest.raises(InputError, match=r"algorithm\.fedsparsify\.vote: 'most' is not one of"):
        load_config(None, ["algorithm.fedsparsify.vote=most"])


# ---------------------------------------------------------------- schedules, round by round
N = 1000


def drive(algo, rounds):
    """The pruned count after every round, the server pruning random distinct weights."""
    layout = (TensorInfo("w", (N,), 0, N, "linear_weight", 0, True),)
    prunable = torch.ones(N, dtype=torch.bool)
    algo = FedSparsify(algo.config, prunable, prunable, layout)
    gen = torch.Generator().manual_seed(0)
    weights = torch.randperm(N, generator=gen).float() + 1.0  # distinct magnitudes
    model, counts = GlobalModel(weights, None), []
    for rnd in range(1, rounds + 1):
        sums = {"delta": torch.zeros(N, dtype=torch.float64)}
        c = RoundContext(round=rnd, rounds=rounds, seed=0, lr=0.1, cohort_samples=1,
                         cohort_size=1)  # fmt: skip
        model = algo.server_step(ctx=c, sums=sums, model=model, server=algo.new_server(
            weights=model.weights, mask=model.mask)).model  # fmt: skip
        counts.append(0 if model.mask is None else int((~model.mask).sum()))
    return counts


def test_cubic_counts_every_round():
    algo = fedsparsify("algorithm.fedsparsify.final_sparsity=0.9", "federation.rounds=10",
                       "algorithm.fedsparsify.start_round=1")  # fmt: skip
    got = drive(algo, 10)
    # s_t = 0.9 - 0.9 (1 - (t - 1) / 9)^3 from round 2; floor(s_t N)
    want = [0] + [math.floor(N * (0.9 - 0.9 * (1 - (t - 1) / 9) ** 3)) for t in range(2, 11)]
    assert got == want and want[-1] == 900


def test_multiplicative_prunes_rate_of_the_current_nonzeros():
    algo = fedsparsify("algorithm.fedsparsify.schedule=multiplicative",
                       "algorithm.fedsparsify.rate=0.3", "algorithm.fedsparsify.frequency=2",
                       "algorithm.fedsparsify.final_sparsity=0.8")  # fmt: skip
    got = drive(algo, 12)
    # events at rounds 2, 4, ...: prune floor(0.3 * kept): 300 (700 kept), +210 = 510,
    # +147 = 657, +102 = 759, then the cap floor(0.8 * 1000) = 800
    assert got == [0, 300, 300, 510, 510, 657, 657, 759, 759, 800, 800, 800]


def test_multiplicative_counts_what_the_vote_removed():
    """Local variant: each client prunes rate of the global mask's kept entries."""
    algo = fedsparsify("algorithm.fedsparsify.variant=local",
                       "algorithm.fedsparsify.schedule=multiplicative",
                       "algorithm.fedsparsify.rate=0.5")  # fmt: skip
    mask = torch.tensor([True] * 6 + [False] * 2)  # 6 kept: prune floor(0.5 * 6) = 3 more
    _, update = run_client(algo, ctx(2), GlobalModel(GLOBAL * mask, mask), 0,
                           torch.tensor(CLIENTS[0]) * mask)  # fmt: skip
    # kept values 4, -3, 2, .5, .25, 1: the three largest survive
    assert update.client_mask.nonzero().squeeze(1).tolist() == [0, 1, 2]
