"""Membership inference as a user runs it: a run from configs/privacy_fmnist.yaml on small
generated images, ``analyze`` showing the attacks, the ``privacy`` command, bad input.

The runs go through the Python API in this process; the ``privacy`` and ``analyze``
commands are launched as a user types them."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

import hpc_fedprune
from hpc_fedprune import InputError, faults

from .conftest import TINY, api_run, cli

SMALL = [
    "data.name=synthetic",
    "data.num_train=400",
    "data.num_test=100",
    "data.shape=[1,28,28]",
    "model.mlp.hidden=[32,32]",
    "federation.rounds=3",
    "federation.eval_every=1",
    "privacy.holdout=0.5",
    "privacy.rounds=[1]",
    "privacy.samples=200",
    "privacy.shadow_models=2",
    "privacy.shadow_epochs=2",
    "output.progress=false",
]


def rows_of(path) -> dict[str, np.ndarray]:
    with h5py.File(path, "r") as f:
        return {k: f["privacy"][k][...] for k in f["privacy"]}


@pytest.fixture(scope="module")
def private_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("privacy") / "run"
    api_run(out, *SMALL, config="privacy_fmnist.yaml")
    return out


@pytest.mark.timeout(300)
def test_run_writes_both_attacks_at_the_chosen_rounds_and_at_the_end(private_run):
    rows = rows_of(private_run / "run.h5")
    assert list(rows["round"]) == [1, 1, 3, 3]
    assert [a.decode() for a in rows["attack"]] == ["threshold", "shadow"] * 2
    assert (rows["members"] == 100).all() and (rows["nonmembers"] == 100).all()
    assert ((rows["auc"] >= 0) & (rows["auc"] <= 1)).all()
    assert np.allclose(rows["balanced_accuracy"], (1 + rows["advantage"]) / 2)


@pytest.mark.timeout(300)
def test_privacy_command_repeats_the_last_attack_and_analyze_shows_it(private_run, tmp_path):
    proc = cli("privacy", str(private_run))
    assert proc.returncode == 0, proc.stderr
    assert "threshold" in proc.stdout and "shadow" in proc.stdout
    run_rows, again = rows_of(private_run / "run.h5"), rows_of(private_run / "privacy.h5")
    last = run_rows["round"] == 3
    for name in run_rows:
        assert np.array_equal(run_rows[name][last], again[name]), name
    proc = cli("analyze", str(private_run), "--out", str(tmp_path / "a"))
    assert proc.returncode == 0, proc.stderr
    assert "MI threshold" in proc.stdout and "MI shadow" in proc.stdout
    table = (tmp_path / "a" / "privacy.csv").read_text().splitlines()
    assert table[0].startswith("source,round,attack,auc,advantage")
    assert len(table) == 1 + 4 + 2  # header, the run's rows, the command's rows


@pytest.mark.timeout(300)
def test_resumed_run_repeats_the_privacy_rows(private_run, tmp_path, monkeypatch):
    # The checkpoint holds the /privacy rows up to its round; the shadow models are
    # trained again after the resume and give the same attack.
    out = tmp_path / "r"
    monkeypatch.setattr(faults, "FAULT", faults._parse("rank=0,round=3,point=train"))
    with pytest.raises(RuntimeError, match="injected fault"):
        api_run(out, *SMALL, "output.checkpoint_every=1", config="privacy_fmnist.yaml")
    monkeypatch.setattr(faults, "FAULT", None)
    assert hpc_fedprune.run(resume=out).rounds == 3
    resumed, whole = rows_of(out / "run.h5"), rows_of(private_run / "run.h5")
    for name in whole:
        assert np.array_equal(resumed[name], whole[name]), name


@pytest.mark.timeout(120)
def test_privacy_command_with_fewer_samples_writes_elsewhere(private_run, tmp_path):
    out = tmp_path / "p.h5"
    proc = cli("privacy", str(private_run), "privacy.samples=50", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert list(rows_of(out)["members"]) == [25, 25]


@pytest.mark.timeout(200)
@pytest.mark.parametrize(
    "args, message",
    [
        (["privacy", "no/such/run"], "no run file at no/such/run"),
        (["privacy", "RUN", "training.lr=1"], "cannot be changed for a trained run"),
        (["privacy", "RUN", "privacy.samples=0"], "privacy.samples: 0 is out of range"),
    ],
)
def test_bad_input_is_one_line_and_status_2(private_run, args, message):
    args = [str(private_run) if a == "RUN" else a for a in args]
    proc = cli(*args)
    assert proc.returncode == 2
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.timeout(200)
def test_run_without_privacy_cannot_be_attacked(tmp_path):
    out = tmp_path / "plain"
    api_run(out, *TINY, "federation.rounds=1")
    proc = cli("privacy", str(out))
    assert proc.returncode == 2 and "without privacy.enabled" in proc.stderr


@pytest.mark.timeout(120)
def test_bad_privacy_config_is_refused_before_running(tmp_path):
    # The command line's one line and status 2 for an InputError: tests/e2e/test_cli.py.
    with pytest.raises(InputError, match=r"privacy\.rounds: \[9\] after the last round \(3\)"):
        api_run(tmp_path / "r", *TINY, "privacy.enabled=true", "privacy.rounds=[9]")
    assert not (tmp_path / "r" / "run.h5").exists()
