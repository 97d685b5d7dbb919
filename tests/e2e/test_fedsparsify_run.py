"""FedSparsify as a whole run: target sparsity, no regrowth, masks in the run file."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from .conftest import TINY, api_run


def run(out, *extra):
    args = [*TINY, "algorithm.name=fedsparsify", "federation.rounds=5", *extra]
    api_run(out, *args)
    return out / "run.h5"


def records(f):
    """Global mask records: (round, flat bool over the prunable tensors in layout order)."""
    names = [n for n in f["masks"] if n != "rounds"]
    order = sorted(names, key=lambda n: list(f["model"].attrs["names"]).index(n))
    rows = []
    for i, rnd in enumerate(f["masks/rounds"][...]):
        parts = [np.unpackbits(f["masks"][n][i], count=f["masks"][n].attrs["numel"]) for n in order]
        rows.append((int(rnd), np.concatenate(parts).astype(bool)))
    return order, rows


def flat_slices(f, names):
    offsets = dict(zip(f["model"].attrs["names"], f["model"].attrs["offsets"]))
    sizes = {n: int(f["masks"][n].attrs["numel"]) for n in names}
    return [slice(offsets[n], offsets[n] + sizes[n]) for n in names]


@pytest.mark.timeout(300)
@pytest.mark.parametrize("variant", ["global", "local"])
def test_no_regrowth_target_sparsity_and_masks_decode(tmp_path, variant):
    path = run(
        tmp_path / variant,
        f"algorithm.fedsparsify.variant={variant}",
        "algorithm.fedsparsify.final_sparsity=0.8",
    )
    with h5py.File(path, "r") as f:
        names, rows = records(f)
        assert [r for r, _ in rows] == sorted(r for r, _ in rows)
        for (_, older), (_, newer) in zip(rows, rows[1:]):
            assert not (newer & ~older).any(), "a pruned weight came back"
        numel = f["model/flat"].shape[0]
        final = np.unpackbits(f["model/mask"][...], count=numel).astype(bool)
        prunable = np.unpackbits(f["model/prunable"][...], count=numel).astype(bool)
        # the last mask record is the final mask, and pruned weights are exactly zero
        assert np.array_equal(
            np.concatenate([final[s] for s in flat_slices(f, names)]), rows[-1][1]
        )
        flat = f["model/flat"][...]
        assert np.all(flat[~final] == 0)
        sparsity = 1 - final[prunable].sum() / prunable.sum()
        assert abs(f["metrics/sparsity"][-1] - sparsity) < 1e-12
        if variant == "global":
            pruned = prunable.sum() - final[prunable].sum()
            assert abs(pruned - int(0.8 * prunable.sum())) <= 1
        else:
            assert 0.6 < sparsity < 0.95  # majority vote of clients purged to 0.8
            assert "masks" in f["clients"] and len(f["clients/masks/client"]) > 0
        up = f["metrics/bytes_up"][...]
        assert up[-1] < 0.5 * up[0]  # later rounds send a fraction of the weights
