"""Mask-history and client-agreement statistics against hand-worked and brute-force answers."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hpc_fedprune.analysis import OVERALL, client_agreement, load_run, mask_history
from hpc_fedprune.analysis.masks import (
    compare_packed,
    gram_and_histogram,
    mask_history_from_records,
    pairwise_jaccard,
    popcount,
    stable_after,
)
from hpc_fedprune.analysis.runfile import MaskRecord, MaskTensor
from tests.unit.runfile_factory import (
    KNOWN_ANSWERS,
    KNOWN_CLIENT_ANSWERS,
    KNOWN_CLIENT_ROWS,
    KNOWN_MASK_ROUNDS,
    default_metrics,
    write_run,
)


@pytest.fixture(scope="module")
def known_run(tmp_path_factory: pytest.TempPathFactory):
    return load_run(
        write_run(tmp_path_factory.mktemp("known") / "r", client_rows=KNOWN_CLIENT_ROWS)
    )


def test_per_record_counts_match_the_hand_worked_history(known_run) -> None:
    h = mask_history(known_run)
    assert h is not None
    np.testing.assert_array_equal(h.rounds, KNOWN_MASK_ROUNDS)
    assert h.tensors == ("conv1.weight", "fc.weight")
    for tensor, want in KNOWN_ANSWERS.items():
        stats = h.overall if tensor == OVERALL else [s for s in h.per_tensor if s.tensor == tensor]
        assert [s.round for s in stats] == KNOWN_MASK_ROUNDS
        assert [s.kept for s in stats] == want["kept"], tensor
        assert [s.pruned for s in stats] == want["pruned"], tensor
        assert [s.regrown for s in stats] == want["regrown"], tensor
        assert [s.hamming for s in stats] == want["hamming"], tensor
        assert [s.jaccard for s in stats] == pytest.approx(want["jaccard"]), tensor
        numel = want["numel"]
        assert [s.sparsity for s in stats] == pytest.approx([1 - k / numel for k in want["kept"]])
        assert stats[0].change_rate is None
        assert stats[-1].change_rate == pytest.approx(want["hamming"][-1] / numel)


def test_summaries_give_stabilisation_round_and_ever_regrown(known_run) -> None:
    h = mask_history(known_run)
    assert h is not None
    for tensor, want in KNOWN_ANSWERS.items():
        s = h.summaries[tensor]
        assert s.numel == want["numel"]
        assert s.records == 4 and (s.first_round, s.last_round) == (2, 8)
        assert s.stable_after_round == want["stable_after_round"], tensor
        assert s.ever_regrown == want["ever_regrown"], tensor
        assert s.ever_regrown_fraction == pytest.approx(want["ever_regrown"] / want["numel"])
        assert s.total_pruned == sum(p for p in want["pruned"] if p)
        assert s.total_regrown == sum(r for r in want["regrown"] if r)
    np.testing.assert_allclose(
        h.sparsity_matrix(), [[0, 4 / 12, 5 / 12, 5 / 12], [0.4, 0.4, 0.4, 0.4]]
    )


def test_client_agreement_matches_the_hand_worked_rounds(known_run) -> None:
    rows = client_agreement(known_run)
    assert [(r.round, r.tensor) for r in rows] == [
        (3, "fc.weight"),
        (3, OVERALL),
        (5, "fc.weight"),
        (5, OVERALL),
    ]
    for r in rows:
        want = KNOWN_CLIENT_ANSWERS[r.round]
        assert r.clients == len(want["clients"]) and r.numel == 5
        assert r.mean_jaccard == pytest.approx(want["mean"])
        assert (r.min_jaccard, r.max_jaccard) == pytest.approx((want["min"], want["max"]))
        np.testing.assert_array_equal(r.kept_by, want["kept_by"])
    assert rows[0].kept_by_all_fraction == pytest.approx(2 / 5)
    assert rows[0].kept_by_none_fraction == pytest.approx(1 / 5)


def test_run_without_masks_has_no_history(tmp_path: Path) -> None:
    run = load_run(write_run(tmp_path / "dense", algorithm="fedavg", masks={}))
    assert mask_history(run) is None and client_agreement(run) == []


@pytest.mark.parametrize(
    ("changed", "done", "want"),
    [
        ([False, True, True, False, False], None, 6),  # last change at the 3rd record
        ([False, False, False, False, False], None, 2),  # never changed: stable from the first
        ([False, False, False, False, True], None, None),  # changed in the last round
        ([False, False, False, False, True], 10, None),
        # Rounds 11 and 12 completed without a record: the mask held still.
        ([False, False, False, False, True], 12, 10),
        ([False], None, None),  # one record, nothing after it
        ([False], 5, 2),
        ([], 5, None),
    ],
)
def test_stable_after(changed: list[bool], done: int | None, want: int | None) -> None:
    rounds = [2, 4, 6, 8, 10][: len(changed)]
    assert stable_after(rounds, changed, done) == want


def test_rounds_after_the_last_record_count_as_unchanged(tmp_path: Path) -> None:
    # 10 rounds done, last mask record in round 8: nothing was recorded in rounds 9-10
    # because the mask did not change.
    run = load_run(write_run(tmp_path / "r", metrics=default_metrics(10)))
    h = mask_history(run)
    assert h is not None and h.rounds_done == 10
    assert h.summaries["fc.weight"].stable_after_round == 8
    assert h.summaries[OVERALL].stable_after_round == 8
    assert h.summaries["conv1.weight"].stable_after_round == 6


def test_pairwise_jaccard_of_empty_masks_is_one() -> None:
    gram = np.zeros((3, 3), dtype=np.int64)
    np.testing.assert_array_equal(pairwise_jaccard(gram), [1.0, 1.0, 1.0])
    assert pairwise_jaccard(np.ones((1, 1), dtype=np.int64)).size == 0


# --- against a brute-force reference on random masks ---------------------------------------


def _reference(masks: list[np.ndarray]):
    """Plain boolean arithmetic, one record pair at a time."""
    out = []
    ever_pruned = np.zeros_like(masks[0])
    ever_regrown = np.zeros_like(masks[0])
    for i, m in enumerate(masks):
        ever_regrown |= ever_pruned & m
        ever_pruned |= ~m
        if i == 0:
            out.append((int(m.sum()), None, None, None))
            continue
        p = masks[i - 1]
        union = int((p | m).sum())
        j = 1.0 if union == 0 else int((p & m).sum()) / union
        out.append((int(m.sum()), int((p & ~m).sum()), int((~p & m).sum()), j))
    return out, int(ever_regrown.sum())


@settings(max_examples=40, deadline=None)
@given(
    numel=st.integers(1, 40),
    records=st.integers(1, 6),
    seed=st.integers(0, 2**32 - 1),
    density=st.floats(0.0, 1.0),
)
def test_packed_statistics_equal_boolean_reference(numel, records, seed, density) -> None:
    rng = np.random.default_rng(seed)
    masks = [rng.random(numel) < density for _ in range(records)]
    t = MaskTensor("w", (numel,), numel)
    recs = [
        MaskRecord(i, 10 * (i + 1), {"w": np.packbits(m)}, {"w": t}) for i, m in enumerate(masks)
    ]
    h = mask_history_from_records([t], recs)
    want, ever = _reference(masks)
    got = [(s.kept, s.pruned, s.regrown, s.jaccard) for s in h.per_tensor]
    for g, w in zip(got, want, strict=True):
        assert g[:3] == w[:3]
        assert g[3] == pytest.approx(w[3])
    assert h.summaries["w"].ever_regrown == ever
    assert h.overall[-1].kept == h.per_tensor[-1].kept


@settings(max_examples=40, deadline=None)
@given(
    clients=st.integers(1, 6),
    numel=st.integers(1, 30),
    seed=st.integers(0, 2**32 - 1),
)
def test_gram_and_histogram_equal_boolean_reference(clients, numel, seed) -> None:
    rng = np.random.default_rng(seed)
    x = rng.random((clients, numel)) < rng.random()
    gram, kept_by = gram_and_histogram(np.packbits(x, axis=1), numel)
    np.testing.assert_array_equal(gram, x.astype(np.int64) @ x.T.astype(np.int64))
    np.testing.assert_array_equal(kept_by, np.bincount(x.sum(axis=0), minlength=clients + 1))
    want = []
    for i, j in itertools.combinations(range(clients), 2):
        union = (x[i] | x[j]).sum()
        want.append(1.0 if union == 0 else (x[i] & x[j]).sum() / union)
    np.testing.assert_allclose(pairwise_jaccard(gram), want)


def test_gram_spans_several_blocks() -> None:
    # More positions than one unpacking block, and not a multiple of 8.
    rng = np.random.default_rng(0)
    numel = (1 << 16) + 13
    x = rng.random((3, numel)) < 0.3
    gram, kept_by = gram_and_histogram(np.packbits(x, axis=1), numel)
    np.testing.assert_array_equal(gram, x.astype(np.int64) @ x.T.astype(np.int64))
    assert kept_by.sum() == numel


def test_compare_packed_ignores_pad_bits() -> None:
    a = np.packbits(np.array([1, 1, 1], dtype=bool))
    b = np.packbits(np.array([0, 1, 1], dtype=bool))
    c = compare_packed(a, b)
    assert (c.pruned, c.regrown, c.hamming, c.intersection, c.union) == (1, 0, 1, 2, 3)
    assert popcount(np.array([255, 1], dtype=np.uint8)) == 9
