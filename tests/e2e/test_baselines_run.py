"""The stateless baselines as whole runs: SNIP, one-shot magnitude, FedProx (docs/methods.md)."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hpc_fedprune.config import load_config
from hpc_fedprune.pruning import pruned_count
from hpc_fedprune.rng import Stream, numpy_rng
from hpc_fedprune.sim.setup import build_setup

from .conftest import TINY, api_run, assert_same_results, read_run


def run(out, *extra):
    api_run(out, *TINY, "output.checkpoint_every=0", *extra)
    return out / "run.h5"


def mask_rows(f):
    """(rounds of the /masks records, final flat mask, flat prunable, each record as flat)."""
    numel = f["model/flat"].shape[0]
    final = np.unpackbits(f["model/mask"][...], count=numel).astype(bool)
    prunable = np.unpackbits(f["model/prunable"][...], count=numel).astype(bool)
    names = [n for n in f["masks"] if n != "rounds"]
    offsets = dict(zip(f["model"].attrs["names"], f["model"].attrs["offsets"]))
    records = []
    for i in range(len(f["masks/rounds"])):
        flat = final.copy()
        for n in names:
            size = int(f["masks"][n].attrs["numel"])
            flat[offsets[n] : offsets[n] + size] = np.unpackbits(f["masks"][n][i], count=size)
        records.append(flat)
    return f["masks/rounds"][...].tolist(), final, prunable, records


def snip_by_hand(out) -> np.ndarray:
    """SNIP's mask from the run's config: the seeded client's first batch, |g * w|, top-k."""
    config = load_config(out / "config.yaml")
    setup = build_setup(config, 1, "cpu")
    rng = numpy_rng(config.runtime.seed, Stream.MASK, 0)
    client = int(rng.integers(config.partition.num_clients))
    part = setup.train_parts[client]
    batch = part[rng.permutation(len(part))[: config.training.batch_size]]
    module = setup.model.module
    x = torch.from_numpy(setup.dataset.x_train[batch])
    y = torch.from_numpy(np.asarray(setup.dataset.y_train[batch]))
    named = dict(module.named_parameters())
    grads = dict(zip(named, torch.autograd.grad(F.cross_entropy(module(x), y), named.values())))
    prunable = setup.algorithm.prunable.numpy()
    score = np.zeros(prunable.size)
    for info in setup.model.layout:
        if info.name in named:
            gw = (grads[info.name] * named[info.name]).detach().abs().reshape(-1)
            score[info.slice] = gw.numpy()
    candidates = np.flatnonzero(prunable)
    k = pruned_count(candidates.size, config.algorithm.snip.sparsity)
    mask = np.ones(prunable.size, dtype=bool)
    # lowest scores go first; among ties the lower flat index (stable sort)
    mask[candidates[np.argsort(score[candidates], kind="stable")[:k]]] = False
    return mask


@pytest.mark.timeout(200)
def test_snip_mask_is_fixed_exact_and_equals_the_hand_computed_mask(tmp_path):
    path = run(tmp_path / "snip", "algorithm.name=snip", "algorithm.snip.sparsity=0.8")
    with h5py.File(path, "r") as f:
        rounds, final, prunable, records = mask_rows(f)
        assert rounds == [1]  # recorded once: the mask never changes
        assert np.array_equal(records[0], final)
        n = int(prunable.sum())
        assert int((prunable & ~final).sum()) == pruned_count(n, 0.8)
        assert np.all(f["model/flat"][...][~final] == 0)
        # Values travel over the mask: each client's upload is ~4 bytes per kept weight.
        up = f["metrics/bytes_up"][...] / f["metrics/clients"][...]
        nnz = int(final.sum())
        assert np.all((4 * nnz <= up) & (up < 4 * nnz + 256))
        assert np.all(f["metrics/sparsity"][...] == f["metrics/sparsity"][0])
    assert np.array_equal(final, snip_by_hand(tmp_path / "snip"))


@pytest.mark.timeout(200)
def test_oneshot_dense_before_t0_exact_at_t0_fixed_after(tmp_path):
    path = run(
        tmp_path / "oneshot",
        "algorithm.name=oneshot",
        "algorithm.oneshot.prune_round=2",
        "algorithm.oneshot.sparsity=0.75",
        "federation.rounds=4",
    )
    with h5py.File(path, "r") as f:
        rounds, final, prunable, records = mask_rows(f)
        assert rounds == [2] and np.array_equal(records[0], final)
        n = int(prunable.sum())
        assert int((prunable & ~final).sum()) == pruned_count(n, 0.75)
        sparsity = f["metrics/sparsity"][...]
        assert sparsity[0] < 0.01 and np.all(sparsity[1:] == sparsity[1])
        # Dense uploads up to t0, then ~4 bytes per kept weight.
        up = f["metrics/bytes_up"][...] / f["metrics/clients"][...]
        numel, nnz = final.size, int(final.sum())
        assert np.all(up[:2] >= 4 * numel)
        assert np.all((4 * nnz <= up[2:]) & (up[2:] < 4 * nnz + 256))


@pytest.mark.timeout(200)
def test_fedprox_with_mu_zero_is_bit_identical_to_fedavg(tmp_path):
    short = ["federation.rounds=2"]
    avg = read_run(run(tmp_path / "avg", "algorithm.name=fedavg", *short))
    prox = read_run(
        run(tmp_path / "prox", "algorithm.name=fedprox", "algorithm.fedprox.mu=0", *short)
    )
    assert_same_results(avg, prox)
